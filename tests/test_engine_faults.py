"""Fault tolerance end to end: a killed driver, a lost Dask worker, a task timeout.

Real Dask, real kernels, real papermill and a real SQLite store. Every process a
test starts runs in its own session and is killed by process group in `finally`;
kernels (which the engine starts in their own sessions) are found by their
`FLYTE_LAB_HOME`, unique to each test, and killed by pid as a last resort.
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
from tests.conftest import CLI, cli_env

pytestmark = pytest.mark.cluster

DASK = str(Path(sys.executable).parent / "dask")


# -- helpers ------------------------------------------------------------------------------------------------------


def _write_notebook(path: Path, params: str, *tasks: str) -> Path:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, *(new_code_cell(t) for t in tasks)]
    nbformat.write(nb, path)
    return path


def _wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _spawn(argv: list[str], home: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    try:
        return subprocess.Popen(argv, env=cli_env(home), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        out.close()


def _killpg(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _home_processes(home: Path, only_kernels: bool = False) -> list[psutil.Process]:
    """Live processes (ours: the home is unique to the test) whose environment has FLYTE_LAB_HOME=home."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if proc.environ().get("FLYTE_LAB_HOME") != str(home):
                continue
            if only_kernels and "ipykernel" not in " ".join(proc.info["cmdline"] or []):
                continue
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        found.append(proc)
    return found


def _describe(procs: list[psutil.Process]) -> str:
    out = []
    for p in procs:
        try:
            out.append(f"{p.pid}: {' '.join(p.cmdline())[:160]}")
        except psutil.Error:
            out.append(f"{p.pid}: (gone)")
    return "; ".join(out)


def _wait_no_home_processes(home: Path, timeout: float, only_kernels: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while True:
        left = _home_processes(home, only_kernels)
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"processes with FLYTE_LAB_HOME={home} still alive after {timeout:g}s: "
                                 f"{_describe(left)}")
        time.sleep(0.25)


def _kill_home_processes(home: Path) -> None:
    """Last-resort cleanup: kill, by pid, every process still carrying this test's private home."""
    for proc in _home_processes(home):
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
            _killpg(proc)
        _kill_home_processes(home)


def _store(home: Path) -> RunStore:
    return RunStore(f"sqlite:///{home}/store.db")


def _only_run_id(home: Path) -> str | None:
    if not (home / "store.db").exists():
        return None
    with _store(home) as store:
        runs = store.list_runs()
    return runs[0]["run_id"] if len(runs) == 1 else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _finish(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> tuple[int, str]:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{proc.args} still running after {timeout:g}s:\n{log.read_text()[-3000:]}") from None
    return rc, log.read_text()


def _json_tail(text: str) -> dict[str, Any]:
    """The JSON object `--json` prints (anything logged before it is skipped)."""
    start = text.find("{\n")
    assert start >= 0, text[-3000:]
    return json.loads(text[start:])


# -- 1. resume after the driver is SIGKILLed ------------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_resume_after_driver_sigkill(home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    nb = _write_notebook(
        tmp_path / "blocking.ipynb", f"marks = {str(marks)!r}",
        "%%flyte_task a(marks: str) -> x: int\n"
        "import os, uuid\n"
        "open(os.path.join(marks, f'a_ran_{uuid.uuid4().hex}'), 'w').close()\n"
        "x = 1",
        "%%flyte_task b(x: int, marks: str) -> y: int\n"
        "import os, time\n"
        "open(os.path.join(marks, 'b_started'), 'w').close()\n"
        "cap = time.time() + 120\n"
        "while not os.path.exists(os.path.join(marks, 'release')):\n"
        "    if time.time() > cap:\n"
        "        raise TimeoutError('never released')\n"
        "    time.sleep(0.1)\n"
        "y = x + 1",
        "%%flyte_task c(y: int) -> z: int\nz = y * 10",
    )
    log = tmp_path / "run.log"
    driver = _spawn([*CLI, "run", str(nb), "--json"], home, log)
    procs.append(driver)

    def a_done_b_running() -> str | None:
        if driver.poll() is not None:
            raise AssertionError(f"the run ended early ({driver.returncode}):\n{log.read_text()[-3000:]}")
        run_id = _only_run_id(home)
        if run_id is None:
            return None
        with _store(home) as store:
            tasks = store.run_tasks(run_id)
        if tasks["a"]["status"] == "succeeded" and tasks["b"]["status"] == "running" \
                and (marks / "b_started").exists():
            return run_id
        return None

    run_id = _wait_for(a_done_b_running, 90, "`a` succeeded and `b` running in the store")
    kernels = _home_processes(home, only_kernels=True)
    assert kernels, "b's kernel must be visible by its FLYTE_LAB_HOME (else the leftover check below proves nothing)"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=10)
    (marks / "release").touch()
    with _store(home) as store:
        assert store.get_run(run_id)["status"] == "running"  # nobody is left to say otherwise

    resume_log = tmp_path / "resume.log"
    resumer = _spawn([*CLI, "resume", run_id, "--json"], home, resume_log)
    procs.append(resumer)
    rc, out = _finish(resumer, resume_log, 90)
    assert rc == 0, out[-3000:]
    printed = _json_tail(out)
    assert printed["run_id"] == run_id and printed["status"] == "succeeded"

    with _store(home) as store:
        run = store.get_run(run_id)
    assert run["status"] == "succeeded"
    assert {name: t["status"] for name, t in run["tasks"].items()} == {
        "a": "succeeded", "b": "succeeded", "c": "succeeded"}
    assert len(list(marks.glob("a_ran_*"))) == 1, "a must not rerun on resume"
    assert [a["status"] for a in run["attempts_detail"]["a"]] == ["succeeded"]
    b_attempts = run["attempts_detail"]["b"]
    assert [(a["status"], a["kind"]) for a in b_attempts[:-1]] == [("failed", "infra")]
    assert b_attempts[0]["error"]["type"] == "DriverLost"
    assert b_attempts[-1]["status"] == "succeeded"
    with _store(home) as store:
        assert store.run_outputs(run_id)["c"]["z"] == 20

    # the killed driver's workers and kernels, and the resumer's, are all gone (orphaned kernels poll their parent)
    _wait_no_home_processes(home, 15)
    alive = [k for k in kernels if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [(k.pid, k.status()) for k in alive]


# -- 2. a worker lost mid-task on a tcp:// cluster ------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_worker_lost_mid_task_is_an_infra_attempt(home: Path, tmp_path: Path,
                                                  procs: list[subprocess.Popen[bytes]]) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _spawn([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                        "--dashboard-address", "127.0.0.1:0"], home, tmp_path / "scheduler.log")
    procs.append(scheduler)
    _wait_for(lambda: _accepts(port) or scheduler.poll() is not None, 30, "the Dask scheduler to listen")
    assert scheduler.poll() is None, (tmp_path / "scheduler.log").read_text()[-3000:]
    worker = _spawn([DASK, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--nanny",
                     "--no-dashboard"], home, tmp_path / "worker.log")
    procs.append(worker)

    nb = _write_notebook(
        tmp_path / "lose_worker.ipynb", f"marks = {str(marks)!r}",
        "%%flyte_task slow(marks: str) -> done: int\n"
        "import os, time\n"
        "first = os.path.join(marks, 'first_attempt')\n"
        "if not os.path.exists(first):\n"
        "    open(first, 'w').close()\n"
        "    with open(os.path.join(marks, 'pid.tmp'), 'w') as f:\n"
        "        f.write(str(os.getppid()))\n"
        "    os.replace(os.path.join(marks, 'pid.tmp'), os.path.join(marks, 'pid'))\n"
        "    cap = time.time() + 60\n"
        "    while time.time() < cap:\n"
        "        time.sleep(0.1)\n"
        "done = 1",
    )
    log = tmp_path / "run.log"
    driver = _spawn([*CLI, "run", str(nb), "--cluster", address, "--json"], home, log)
    procs.append(driver)

    def worker_pid() -> int | None:
        if driver.poll() is not None:
            raise AssertionError(f"the run ended early ({driver.returncode}):\n{log.read_text()[-3000:]}")
        pid_file = marks / "pid"
        return int(pid_file.read_text()) if pid_file.exists() else None

    pid = _wait_for(worker_pid, 90, "the task to report its worker's pid")
    nanny = psutil.Process(worker.pid)
    # the kernel's parent is the worker process, a child of the nanny (not the nanny itself)
    assert pid != worker.pid and pid in {c.pid for c in nanny.children(recursive=True)}
    os.kill(pid, signal.SIGKILL)

    rc, out = _finish(driver, log, 90)
    assert rc == 0, out[-3000:]
    printed = _json_tail(out)
    assert printed["status"] == "succeeded" and printed["tasks"]["slow"]["status"] == "succeeded"
    assert nanny.is_running(), "the nanny must survive and restart its worker"
    assert not psutil.pid_exists(pid) or pid not in {c.pid for c in nanny.children()}
    assert nanny.children(), "the nanny restarted its worker"

    show = subprocess.run([*CLI, "show", printed["run_id"], "--json"], env=cli_env(home), capture_output=True,
                          text=True, timeout=60)
    assert show.returncode == 0, show.stderr
    assert json.loads(show.stdout)["status"] == "succeeded"
    with _store(home) as store:
        run = store.get_run(printed["run_id"])
    attempts = run["attempts_detail"]["slow"]
    assert [(a["status"], a["kind"]) for a in attempts[:-1]] == [("failed", "infra")], attempts
    assert attempts[-1]["status"] == "succeeded", attempts
    assert run["tasks"]["slow"]["attempts"] == len(attempts) == 2
    assert run["tasks"]["slow"]["outputs"]["done"]["preview"] == "1"


# -- 3. a task timeout stops its kernel ------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_timeout_fails_the_task_and_stops_its_kernel(home: Path, tmp_path: Path,
                                                     procs: list[subprocess.Popen[bytes]]) -> None:
    nb = _write_notebook(
        tmp_path / "too_slow.ipynb", "n = 1",
        "%%flyte_task sleepy(n: int) -> x: int --timeout 3s\nimport time\ntime.sleep(60)\nx = n",
    )
    log = tmp_path / "run.log"
    began = time.monotonic()
    driver = _spawn([*CLI, "run", str(nb), "--workers", "1", "--json"], home, log)
    procs.append(driver)
    rc, out = _finish(driver, log, 55)
    elapsed = time.monotonic() - began
    assert rc == 1, out[-3000:]
    assert elapsed < 50
    printed = _json_tail(out)
    task = printed["tasks"]["sleepy"]
    assert printed["status"] == "failed" and task["status"] == "failed"
    assert task["error"]["type"] == "Timeout", task["error"]
    assert task["duration_s"] is not None and task["duration_s"] < 30, task
    assert task["attempts"] == 1

    _wait_no_home_processes(home, 10, only_kernels=True)
