"""The warm local executor's own process (`main(FOLDER WORKERS IDLE_S)`), started by `engine/shared_executor.py`.

It runs the same local cluster a private run starts (`clusters.local_cluster`: threaded workers, the machine's
resources shared out, adaptive), listening on `tls://127.0.0.1` with the executor's own certificate, and keeps
its workers' kernel templates and pooled kernels between runs. It records its address in `executor.json` once
it listens, and stops, removing it, on SIGTERM/SIGINT or after IDLE_S seconds with neither a client (a run's
driver) connected nor a task on the cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHECK_S = 0.5


def _record(folder: Path, cluster: Any, workers: int) -> None:
    from flyte_lab.private_fs import write_private

    data = {"address": cluster.scheduler_address, "pid": os.getpid(), "workers": workers, "started": time.time()}
    write_private(folder / "executor.json", json.dumps(data))


def _busy(scheduler: Any) -> bool:
    """A run's client is connected, or the cluster holds a task (read from the scheduler's loop thread)."""
    clients = [c for c in scheduler.clients if c != "fire-and-forget"]
    return bool(clients or scheduler.tasks)


def serve(folder: Path, workers: int, idle_s: float) -> None:
    from flyte_lab.engine.clusters import local_cluster
    from flyte_lab.engine.shared_executor import locked, security
    from flyte_lab.engine.worker.kernels import close_pools

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        with local_cluster(workers, security=security(folder, "cluster")) as cluster, \
                contextlib.ExitStack() as template:
            _record(folder, cluster, workers)
            idle_since = time.monotonic()
            served = warm = False
            while not stopping.wait(CHECK_S):
                if cluster.sync(_ask_busy, cluster.scheduler):
                    idle_since = time.monotonic()
                    served = True
                    continue
                if served and not warm:  # after the first run, not during it: its imports cost ~2 CPU-s
                    template.enter_context(_driver_template(folder))
                    warm = True
                if time.monotonic() - idle_since < idle_s:
                    continue
                with locked(folder):  # a client that read the address connects first, or finds it gone
                    if cluster.sync(_ask_busy, cluster.scheduler):
                        idle_since = time.monotonic()
                        continue
                    (folder / "executor.json").unlink(missing_ok=True)
                    break
    finally:
        (folder / "executor.json").unlink(missing_ok=True)
        close_pools()


@contextlib.contextmanager
def _driver_template(folder: Path) -> Iterator[None]:
    """The warm driver template `flyte-lab run` hands itself to (`cli/warm_driver.py`), for this executor's life.
    Started from this (main) thread: its parent-death signal follows the thread that forked it."""
    import subprocess

    import flyte_lab
    from flyte_lab.engine.shared_executor import source_root

    code = (f"import sys; sys.path.insert(0, {source_root(flyte_lab)!r}); "
            "from flyte_lab.cli.warm_driver import main; main(sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder / "driver.sock"), str(os.getpid())],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=str(folder))
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _ask_busy(scheduler: Any) -> bool:
    return _busy(scheduler)


def main(argv: list[str]) -> None:
    from flyte_lab.import_costs import decline_unused_imports
    from flyte_lab.private_process import hide_memory

    decline_unused_imports()  # its workers import papermill (nbformat, jsonschema): ~2 CPU-s on a cold run
    from flyte_lab.process_exit import exit_process

    hide_memory()  # it holds the starting run's environment and, for the tasks it runs, their secrets
    folder, workers, idle_s = Path(argv[0]), int(argv[1]), float(argv[2])
    serve(folder, workers, idle_s)
    exit_process(0)
