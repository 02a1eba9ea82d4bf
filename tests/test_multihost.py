"""Several hosts on one machine: the S3 server, the Dask scheduler, two workers and the driver each in a network
namespace of their own, joined by veth pairs to a bridge the test makes. Each host reaches the others only by
its own address; artifacts, executed notebooks and results live on the S3 server. A real pipeline runs across
them, and its tasks say from which address they ran.

Skipped, with the reason, where namespaces cannot be made (not root, no CAP_NET_ADMIN, no `ip`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import Network, Unavailable, namespaces_permitted
from tests.process_helpers import DASK, kill_home_processes, killpg, wait_for, write_notebook
from tests.s3_server import S3Server
from tests.s3_server import Unavailable as NoS3

pytestmark = pytest.mark.cluster
BUCKET = "flyte-lab-hosts"
DASK_PORT = 8786


@pytest.fixture
def network() -> Iterator[Network]:
    why = namespaces_permitted()
    if why:
        pytest.skip(f"multi-host test needs network namespaces: {why}")
    try:
        net = Network.create()
    except Unavailable as err:
        pytest.skip(f"multi-host test needs a bridge and veth pairs: {err}")
    try:
        yield net
    finally:
        net.close()


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


@pytest.mark.timeout(240)
def test_a_pipeline_runs_across_hosts_in_network_namespaces(network: Network, tmp_path: Path) -> None:
    s3_host, sched_host = network.add_host("s3"), network.add_host("sched")
    workers = [network.add_host("w0"), network.add_host("w1")]
    driver_host = network.add_host("drv")
    homes = {name: tmp_path / f"{name}-home" for name in ("drv", "w0", "w1")}
    started: list[subprocess.Popen[bytes]] = []
    s3: S3Server | None = None
    try:
        try:
            s3 = S3Server.start(host=s3_host.address, prefix=s3_host.exec_prefix)
        except NoS3 as why:
            pytest.skip(f"no S3 server for the multi-host test: {why}")
        s3.make_bucket(BUCKET)  # from the test's own address on the bridge
        base = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "PYTHONPATH": str(Path.cwd()),
                **s3.env(), "FLYTE_LAB_ARTIFACTS": f"s3://{BUCKET}/team"}
        address = f"tcp://{sched_host.address}:{DASK_PORT}"
        started.append(_spawn([*sched_host.exec_prefix, DASK, "scheduler", "--host", sched_host.address,
                               "--port", str(DASK_PORT), "--dashboard-address", "127.0.0.1:0"],
                              base, tmp_path / "scheduler.log"))
        for i, host in enumerate(workers):
            started.append(_spawn(
                [*host.exec_prefix, DASK, "worker", address, "--host", host.address, "--nthreads", "1",
                 "--no-nanny", "--no-dashboard", "--resources", "CPU=2,MEMORY=2e9", "--name", f"w{i}"],
                {**base, "FLYTE_LAB_HOME": str(homes[f"w{i}"])}, tmp_path / f"worker{i}.log"))

        def worker_addresses() -> set[str]:
            from distributed import Client

            try:
                with Client(address, timeout=5) as client:
                    return {w.split("//")[1].rsplit(":", 1)[0] for w in client.scheduler_info()["workers"]}
            except OSError:
                return set()

        wait_for(lambda: len(worker_addresses()) == 2 or any(p.poll() is not None for p in started), 90,
                 "both workers to join from their own hosts", interval=0.5)
        assert worker_addresses() == {h.address for h in workers}, [p.poll() for p in started]

        nb = write_notebook(
            tmp_path / "hosts.ipynb", 'n = 4\nprobe = "127.0.0.1"',
            "%%flyte_task make(n: int) -> numbers: list[int]\nnumbers = list(range(n))",
            "%%flyte_task where(numbers: int, probe: str) -> addr: str --map-over numbers --cpu 2\n"
            "import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.connect((probe, 9))  # no packet is sent: this only picks the host's own address\n"
            "addr = s.getsockname()[0]\n"
            "s.close()",
            "%%flyte_task gather(addr: list[str], numbers: list[int]) -> hosts: list[str]\n"
            "hosts = sorted(set(addr))\n"
            "assert len(addr) == len(numbers)",
        )
        ran = subprocess.run([*driver_host.exec_prefix, sys.executable, "-m", "flyte_lab.cli.main", "run", str(nb),
                              "--cluster", address, "-p", f"probe={sched_host.address}", "--json"],
                             env={**base, "FLYTE_LAB_HOME": str(homes["drv"])}, capture_output=True, text=True,
                             timeout=180, stdin=subprocess.DEVNULL)
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        run = json.loads(ran.stdout)
        assert run["status"] == "succeeded"
        outputs = subprocess.run([*driver_host.exec_prefix, sys.executable, "-m", "flyte_lab.cli.main", "outputs",
                                  run["run_id"], "--json"], env={**base, "FLYTE_LAB_HOME": str(homes["drv"])},
                                 capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert outputs.returncode == 0, outputs.stderr[-2000:]
        hosts = json.loads(outputs.stdout)["gather"]["hosts"]
        print("map-over tasks ran on", hosts)
        # every task ran on a worker host: never on the driver's, the scheduler's or the S3 server's
        assert hosts and set(hosts) <= {h.address for h in workers}, hosts
        keys = s3.keys(BUCKET, "team/runs/" + run["run_id"] + "/")
        assert any(k.endswith("/gather/attempt-1.ipynb") for k in keys), keys
        assert not (homes["drv"] / "artifacts").exists()
        for name in ("w0", "w1"):
            assert not (homes[name] / "artifacts").exists()
    finally:
        for proc in reversed(started):
            killpg(proc)
        for home in homes.values():
            kill_home_processes(home)  # kernels run in sessions of their own
        if s3 is not None:
            s3.stop()
