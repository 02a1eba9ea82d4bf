"""Real processes for end-to-end tests: notebooks, CLI drivers, Dask processes, and their cleanup.

Every process a test starts runs in its own session and is killed by process group in `finally`;
kernels (which the engine starts in their own sessions) are found by their `FLYTE_LAB_HOME`,
unique to each test, and killed by pid as a last resort.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from flyte_lab.store import RunStore
from tests.conftest import cli_env

DASK = str(Path(sys.executable).parent / "dask")

# ------------------------------------------------------------------------------------------------------


def write_notebook(path: Path, params: str, *tasks: str) -> Path:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, *(new_code_cell(t) for t in tasks)]
    nbformat.write(nb, path)
    return path


def failing_map_pipeline(path: Path) -> Path:
    """`make` succeeds, `square` maps over its 3 items and succeeds, `total` divides by zero: 4 of 5 done."""
    return write_notebook(
        path, "n = 3",
        "%%flyte_task make(n: int) -> items: list[int]\nitems = list(range(1, n + 1))",
        "%%flyte_task square(items: int) -> sq: int --map-over items\nsq = items * items",
        "%%flyte_task total(sq: list[int]) -> s: float\ns = sum(sq) / 0",
    )


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def spawn(argv: list[str], home: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    try:
        return subprocess.Popen(argv, env=cli_env(home), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        out.close()


def killpg(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def is_kernel(proc: psutil.Process) -> bool:
    """A kernel started as a process (ipykernel_launcher), or forked by a kernel template (its parent)."""
    cmdline = " ".join(proc.cmdline())
    if "ipykernel" in cmdline:
        return True
    parent = proc.parent()
    return "kernel_template" in cmdline and parent is not None and "kernel_template" in " ".join(parent.cmdline())


def home_processes(home: Path, only_kernels: bool = False) -> list[psutil.Process]:
    """Live processes (ours: the home is unique to the test) whose environment has FLYTE_LAB_HOME=home."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if proc.environ().get("FLYTE_LAB_HOME") != str(home):
                continue
            if only_kernels and not is_kernel(proc):
                continue
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        found.append(proc)
    return found


def describe(procs: list[psutil.Process]) -> str:
    out = []
    for p in procs:
        try:
            out.append(f"{p.pid}: {' '.join(p.cmdline())[:160]}")
        except psutil.Error:
            out.append(f"{p.pid}: (gone)")
    return "; ".join(out)


def wait_no_home_processes(home: Path, timeout: float, only_kernels: bool = False) -> None:
    """Nothing of this home's runs is left, once its shared executor (kept between runs by design: its pooled
    kernels and templates too) is stopped. Tests of what a run itself kills (cancel, timeouts, a killed
    driver) run on a cluster of their own (`--cluster local`), where this stop hides nothing."""
    from flyte_lab.engine.shared_executor import stop

    stop(home)
    deadline = time.monotonic() + timeout
    while True:
        left = home_processes(home, only_kernels)
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"processes with FLYTE_LAB_HOME={home} still alive after {timeout:g}s: "
                                 f"{describe(left)}")
        time.sleep(0.25)


def kill_home_processes(home: Path) -> None:
    """Last-resort cleanup: kill, by pid, every process still carrying this test's private home."""
    for proc in home_processes(home):
        try:
            proc.kill()
        except psutil.Error:
            pass


@pytest.fixture
def procs(home: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts (each in its own session); their groups are killed however the test ends."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            killpg(proc)
        kill_home_processes(home)


def open_store(home: Path) -> RunStore:
    from tests.pg_server import store_url

    return RunStore(store_url(home))


def only_run_id(home: Path) -> str | None:
    from tests.pg_server import store_exists

    if not store_exists(home):
        return None
    with open_store(home) as store:
        runs = store.list_runs()
    return runs[0]["run_id"] if len(runs) == 1 else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def finish(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> tuple[int, str]:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{proc.args} still running after {timeout:g}s:\n{log.read_text()[-3000:]}") from None
    return rc, log.read_text()


def json_tail(text: str) -> dict[str, Any]:
    """The JSON object `--json` prints (anything logged before it is skipped)."""
    start = text.find("{\n")
    assert start >= 0, text[-3000:]
    return json.loads(text[start:])




# -- timing a cancel ----------------------------------------------------------------------------------------------

CANCEL_BOUND_S = 3.0  # "within about a second" (~0.5 s idle), with room for a loaded 2-core machine
PYTHON_START_S = 3.0  # one CLI process starting on a loaded machine (~0.8 s idle)
SLEEPER = "import os, time\nopen(os.path.join(marks, f'{NAME}_pid_{os.getpid()}'), 'w').close()\ntime.sleep(600)\n"


def sleeping_notebook(path: Path, marks: Path) -> Path:
    """Two tasks side by side that run until killed (each leaves `NAME_pid_PID` in `marks` as it starts), and one
    that needs both."""
    return write_notebook(
        path, f"marks = {str(marks)!r}",
        "%%flyte_task left(marks: str) -> a: int\n" + SLEEPER.replace("{NAME}", "left") + "a = 1",
        "%%flyte_task right(marks: str) -> b: int\n" + SLEEPER.replace("{NAME}", "right") + "b = 2",
        "%%flyte_task both(a: int, b: int) -> c: int\nc = a + b",
    )


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def running_kernels(marks: Path, driver: subprocess.Popen[bytes] | None, count: int) -> list[int]:
    """The pids of the task kernels that announced themselves in `marks`, once there are `count` of them."""
    if driver is not None and driver.poll() is not None:
        raise AssertionError(f"the run's process ended (exit {driver.returncode}) before its tasks started")
    pids = sorted(int(p.name.rpartition("_")[2]) for p in marks.glob("*_pid_*"))
    return pids if len(pids) == count and all(pid_alive(pid) for pid in pids) else []


def time_cancel(home: Path, run_id: str, kernels: list[int], ends: dict[str, int],
                timeout: float = 40) -> dict[str, float]:
    """Seconds from the run's cancel request reaching the store to: the run recorded `cancelled`, the last of
    `kernels` gone, and each process of `ends` (name -> pid) exited.

    The store is read with plain SQL (the code under test is not asked). The request's moment is taken as the
    last poll that did not see it, so every figure is an upper bound. The timeout is long enough to show (in
    the failure) how late a slow cancel is."""
    import sqlalchemy

    from tests.pg_server import store_url

    engine = sqlalchemy.create_engine(store_url(home))
    row = sqlalchemy.text("SELECT status, cancel_requested_at FROM runs WHERE run_id = :run_id")

    def read() -> Any:
        with engine.connect() as conn:
            return conn.execute(row, {"run_id": run_id}).one()

    try:
        start = requested = time.monotonic()
        while read().cancel_requested_at is None:
            requested = time.monotonic()
            if requested - start > timeout:
                raise AssertionError(f"no cancel request for run {run_id} reached the store in {timeout:g}s")
            time.sleep(0.02)
        seen: dict[str, float] = {}
        waiting = {f"{name} exited": pid for name, pid in ends.items()}
        while time.monotonic() - requested < timeout:
            now = time.monotonic() - requested
            if "run recorded cancelled" not in seen and read().status == "cancelled":
                seen["run recorded cancelled"] = now
            if "task kernels gone" not in seen and not any(pid_alive(pid) for pid in kernels):
                seen["task kernels gone"] = now
            for what, pid in list(waiting.items()):
                if not pid_alive(pid):
                    seen[what] = now
                    del waiting[what]
            if len(seen) == 2 + len(ends):
                return {what: round(at, 2) for what, at in seen.items()}
            time.sleep(0.05)
        raise AssertionError(f"{timeout:g}s after the cancel request, only: {seen}")
    finally:
        engine.dispose()
