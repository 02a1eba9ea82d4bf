"""Placement against real Dask: a local cluster shares the machine among its workers; a remote
scheduler is asked for worker resources without pickling any flyte_lab code; a remote cluster is
refused when the artifacts live on a path only this machine has."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from flyte_lab.engine.clusters import check_artifact_root, connect, machine_resources, unplaceable, worker_resources
from flyte_lab.errors import UserInputError

DASK = str(Path(sys.executable).parent / "dask")


def test_machine_resources_are_shared_out() -> None:
    whole = machine_resources()
    assert whole == {"CPU": float(os.cpu_count() or 1), "MEMORY": float(psutil.virtual_memory().total)}
    assert machine_resources(4) == {"CPU": whole["CPU"] / 4, "MEMORY": whole["MEMORY"] / 4}


@pytest.mark.cluster
def test_local_workers_each_get_their_share(home: Path) -> None:
    with connect("local", workers=2) as client:
        share = machine_resources(2)
        assert client.flyte_lab_offers == [share]
        client.wait_for_workers(1, timeout=30)
        offered = worker_resources(client)
        assert offered and all(offer == share for offer in offered)
        assert unplaceable(client, {"CPU": share["CPU"]}) is None
        why = unplaceable(client, {"CPU": share["CPU"] * 2})
        assert why is not None and "fewer --workers" in why


# -- a real scheduler and worker on 127.0.0.1, with no usable flyte_lab ------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """`dask scheduler` + `dask worker --resources CPU=2,MEMORY=4e9`, both with a flyte_lab that cannot be
    imported first on their path: if placement pickled any flyte_lab function, the scheduler would fail."""
    fake = tmp_path / "no_flyte_lab" / "flyte_lab"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('flyte_lab is not installed on this machine')\n")
    env = dict(os.environ, PYTHONPATH=str(fake.parent))
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    started: list[subprocess.Popen[bytes]] = []

    def spawn(argv: list[str], log: str) -> subprocess.Popen[bytes]:
        with (tmp_path / log).open("wb") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        started.append(proc)
        return proc

    try:
        spawn([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", "127.0.0.1:0"],
              "scheduler.log")
        spawn([DASK, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard",
               "--resources", "CPU=2 MEMORY=4e9"], "worker.log")
        yield address
    finally:
        for proc in started:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_remote_placement_reads_scheduler_info(dask_cluster: str, tmp_path: Path) -> None:
    from distributed import Client

    try:  # the client keeps retrying while the scheduler starts
        client = Client(dask_cluster, timeout=60)
    except OSError:
        raise AssertionError((tmp_path / "scheduler.log").read_text()[-3000:]) from None
    with client:
        client.wait_for_workers(1, timeout=60)
        assert worker_resources(client) == [{"CPU": 2.0, "MEMORY": 4e9}]
        assert unplaceable(client, {"CPU": 2.0, "MEMORY": 1e9}) is None
        why = unplaceable(client, {"CPU": 3.0})
        assert why == "asks for CPU=3 but no worker offers that much (workers offer CPU=2, MEMORY=4e+09)"
        assert "GPU=1" in (unplaceable(client, {"GPU": 1.0}) or "")
        with pytest.raises(Exception, match="not installed on this machine"):
            # proof that the scheduler cannot unpickle flyte_lab code: the old way would fail here
            client.run_on_scheduler(worker_resources)


# -- artifacts the workers can reach ------------------------------------------------------------------


@pytest.mark.parametrize(("cluster", "root", "shared", "refused"), [
    ("tcp://10.0.0.5:8786", "file:///home/me/.flyte_lab/artifacts", False, True),
    ("tcp://10.0.0.5:8786", "/home/me/.flyte_lab/artifacts", False, True),
    ("tcp://10.0.0.5:8786", "file:///mnt/nfs/artifacts", True, False),
    ("tcp://10.0.0.5:8786", "s3://bucket/prefix", False, False),
    ("tcp://10.0.0.5:8786", "gs://bucket/prefix", False, False),
    ("local", "file:///home/me/.flyte_lab/artifacts", False, False),
])
def test_check_artifact_root(cluster: str, root: str, shared: bool, refused: bool) -> None:
    if not refused:
        check_artifact_root(cluster, root, shared)
        return
    with pytest.raises(UserInputError) as info:
        check_artifact_root(cluster, root, shared)
    message = info.value.message
    assert "\n" not in message and "FLYTE_LAB_ARTIFACTS" in message and "--shared-fs" in message
    assert message.startswith(f"--cluster {cluster}: artifacts live in {root}")


def test_the_local_cluster_listens_on_loopback_only_and_has_no_dask_dashboard(home: Path) -> None:
    with connect("local", workers=1) as client:
        scheduler = client.cluster.scheduler
        assert scheduler.http_server.address == "127.0.0.1"  # its /metrics server: never 0.0.0.0:8787
        assert scheduler.http_server.port != 8787


def test_adaptive_scale_down_never_picks_a_worker_running_a_task() -> None:
    """Dask's `workers_to_close` asks each scheduler plugin which workers may go: a busy one never may (its running
    task would be run again elsewhere, a second attempt nothing failed)."""
    from types import SimpleNamespace

    from flyte_lab.engine.clusters import keep_busy_workers

    busy, idle = SimpleNamespace(processing={"t3"}), SimpleNamespace(processing=set())
    assert keep_busy_workers().valid_workers_downscaling(None, [busy, idle]) == [idle]


_RELEASE = threading.Event()  # module level: the in-process workers run `_hold` by reference


def _hold() -> None:
    _RELEASE.wait(30)


@pytest.mark.cluster
def test_the_local_cluster_keeps_its_busy_workers_when_its_target_drops() -> None:
    """On a real local cluster: asked to close down to one worker while both run a task, the scheduler offers
    neither."""
    from distributed import Client

    from flyte_lab.engine.clusters import local_cluster

    release = _RELEASE
    release.clear()
    with local_cluster(2) as local, Client(local, set_as_default=False) as client:
        client.wait_for_workers(2)
        futures = [client.submit(_hold, pure=False, workers=[w], key=f"hold-{i}")
                   for i, w in enumerate(client.scheduler_info()["workers"])]
        try:
            while sum(len(ws.processing) for ws in local.scheduler.workers.values()) < 2:
                release.wait(0.05)
            assert local.scheduler.workers_to_close(target=1) == []
        finally:
            release.set()
        client.gather(futures)
