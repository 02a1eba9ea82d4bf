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


