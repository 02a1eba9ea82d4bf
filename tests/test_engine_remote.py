"""Workers that share no disk with the driver: two `dask worker` processes, each in its own mount namespace
with a private tmpfs over FLYTE_LAB_HOME (what it writes there, the driver never sees), and the artifact root
on a folder every process sees. A real pipeline must run across them and its executed notebooks must be
readable by the driver.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CLI, cli_env
from tests.process_helpers import DASK, accepts, free_port, procs, spawn, wait_for, write_notebook

pytestmark = pytest.mark.cluster

__all__ = ["procs"]  # a fixture, used by name


def _private_mounts_work() -> bool:
    try:
        probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt"], capture_output=True,
                               timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@pytest.mark.timeout(240)
def test_pipeline_across_workers_without_the_drivers_disk(home: Path, tmp_path: Path,
                                                          procs: list[subprocess.Popen[bytes]]) -> None:
    if not _private_mounts_work():
        pytest.skip("`unshare -m` with a tmpfs mount is not permitted here (needs root or user namespaces)")
    shared = tmp_path / "shared-artifacts"
    shared.mkdir()
    home.mkdir(parents=True)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = spawn([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                       "--dashboard-address", "127.0.0.1:0"], home, tmp_path / "scheduler.log")
    procs.append(scheduler)
    wait_for(lambda: accepts(port) or scheduler.poll() is not None, 30, "the Dask scheduler to listen")
    for i in range(2):
        # the worker's FLYTE_LAB_HOME is the driver's path, but a private, empty tmpfs in its own namespace
        script = (f"mount -t tmpfs none {home} && exec {DASK} worker {address} --host 127.0.0.1 --nthreads 1 "
                  f"--no-nanny --no-dashboard --resources CPU=2,MEMORY=2e9 --name w{i}")
        procs.append(spawn(["unshare", "-m", "sh", "-c", script], home, tmp_path / f"worker{i}.log"))

    def two_workers() -> bool:
        from distributed import Client

        with Client(address, timeout=5) as client:
            return len(client.scheduler_info()["workers"]) == 2

    wait_for(two_workers, 60, "both workers to join", interval=0.5)

    nb = write_notebook(
        tmp_path / "remote.ipynb", "n = 5",
        "%%flyte_task make(n: int) -> numbers: list[int] --cpu 1\nnumbers = list(range(n))",
        "%%flyte_task square(numbers: int) -> squares: int --map-over numbers\nsquares = numbers * numbers",
        "%%flyte_task total(squares: list[int]) -> result: int --cpu 2\nresult = sum(squares)",
    )
    env = cli_env(home)
    env["FLYTE_LAB_ARTIFACTS"] = str(shared)

    # a local artifact folder on a tcp:// cluster is refused unless the disk is said to be shared
    refused = subprocess.run([*CLI, "run", str(nb), "--cluster", address], env=env, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2, refused.stderr
    assert "FLYTE_LAB_ARTIFACTS" in refused.stderr and "--shared-fs" in refused.stderr
    assert not (home / "store.db").exists() or "run " not in refused.stdout

    ran = subprocess.run([*CLI, "run", str(nb), "--cluster", address, "--shared-fs", "--json"], env=env,
                         capture_output=True, text=True, timeout=180)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    run = json.loads(ran.stdout)
    assert run["status"] == "succeeded"
    for name, task in run["tasks"].items():
        notebook = Path(task["output_notebook"])
        assert notebook.is_file() and shared in notebook.parents, (name, notebook)
    outputs = subprocess.run([*CLI, "outputs", run["run_id"], "--json"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert json.loads(outputs.stdout)["total"]["result"] == sum(i * i for i in range(5))
    # nothing a worker wrote landed in the driver's home: only the driver's own store and key are there
    assert sorted(p.name for p in home.iterdir() if not p.name.startswith("store.db")) in (
        [], ["artifact.key"], ["artifact-cache", "artifact.key"])
