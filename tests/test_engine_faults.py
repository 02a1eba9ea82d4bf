"""Fault tolerance end to end: a killed driver, a lost Dask worker, a task timeout.

Real Dask, real kernels, real papermill and a real SQLite store (processes from tests/process_helpers.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import CLI, cli_env
from tests.process_helpers import (
    DASK,
    accepts,
    finish,
    free_port,
    home_processes,
    json_tail,
    only_run_id,
    open_store,
    procs,
    spawn,
    wait_for,
    wait_no_home_processes,
    write_notebook,
)

pytestmark = pytest.mark.cluster

__all__ = ["procs"]  # a fixture, used by name

# -- 1. resume after the driver is SIGKILLed ------------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_resume_after_driver_sigkill(home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    nb = write_notebook(
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
    driver = spawn([*CLI, "run", str(nb), "--cluster", "local", "--json"], home, log)
    procs.append(driver)

    def a_done_b_running() -> str | None:
        if driver.poll() is not None:
            raise AssertionError(f"the run ended early ({driver.returncode}):\n{log.read_text()[-3000:]}")
        run_id = only_run_id(home)
        if run_id is None:
            return None
        with open_store(home) as store:
            tasks = store.run_tasks(run_id)
        if tasks["a"]["status"] == "succeeded" and tasks["b"]["status"] == "running" \
                and (marks / "b_started").exists():
            return run_id
        return None

    run_id = wait_for(a_done_b_running, 90, "`a` succeeded and `b` running in the store")
    kernels = home_processes(home, only_kernels=True)
    assert kernels, "b's kernel must be visible by its FLYTE_LAB_HOME (else the leftover check below proves nothing)"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=10)
    (marks / "release").touch()
    with open_store(home) as store:
        assert store.get_run(run_id)["status"] == "running"  # nobody is left to say otherwise

    resume_log = tmp_path / "resume.log"
    resumer = spawn([*CLI, "resume", run_id, "--json"], home, resume_log)
    procs.append(resumer)
    rc, out = finish(resumer, resume_log, 90)
    assert rc == 0, out[-3000:]
    printed = json_tail(out)
    assert printed["run_id"] == run_id and printed["status"] == "succeeded"

    with open_store(home) as store:
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
    with open_store(home) as store:
        assert store.run_outputs(run_id)["c"]["z"] == 20

    # the killed driver's workers and kernels, and the resumer's, are all gone (orphaned kernels poll their parent)
    wait_no_home_processes(home, 15)
    alive = [k for k in kernels if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [(k.pid, k.status()) for k in alive]


# -- 2. a worker lost mid-task on a tcp:// cluster ------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_worker_lost_mid_task_is_an_infra_attempt(home: Path, tmp_path: Path,
                                                  procs: list[subprocess.Popen[bytes]]) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = spawn([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                        "--dashboard-address", "127.0.0.1:0"], home, tmp_path / "scheduler.log")
    procs.append(scheduler)
    wait_for(lambda: accepts(port) or scheduler.poll() is not None, 30, "the Dask scheduler to listen")
    assert scheduler.poll() is None, (tmp_path / "scheduler.log").read_text()[-3000:]
    worker = spawn([DASK, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--nanny",
                     "--no-dashboard"], home, tmp_path / "worker.log")
    procs.append(worker)

    nb = write_notebook(
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
    driver = spawn([*CLI, "run", str(nb), "--cluster", address, "--shared-fs", "--json"], home, log)
    procs.append(driver)

    def worker_pid() -> int | None:
        if driver.poll() is not None:
            raise AssertionError(f"the run ended early ({driver.returncode}):\n{log.read_text()[-3000:]}")
        pid_file = marks / "pid"
        return int(pid_file.read_text()) if pid_file.exists() else None

    pid = wait_for(worker_pid, 90, "the task to report its worker's pid")
    nanny = psutil.Process(worker.pid)
    # the kernel's parent is the worker process, a child of the nanny (not the nanny itself)
    assert pid != worker.pid and pid in {c.pid for c in nanny.children(recursive=True)}
    os.kill(pid, signal.SIGKILL)

    rc, out = finish(driver, log, 90)
    assert rc == 0, out[-3000:]
    printed = json_tail(out)
    assert printed["status"] == "succeeded" and printed["tasks"]["slow"]["status"] == "succeeded"
    assert nanny.is_running(), "the nanny must survive and restart its worker"
    assert not psutil.pid_exists(pid) or pid not in {c.pid for c in nanny.children()}
    assert nanny.children(), "the nanny restarted its worker"

    show = subprocess.run([*CLI, "show", printed["run_id"], "--json"], env=cli_env(home), capture_output=True,
                          text=True, timeout=60)
    assert show.returncode == 0, show.stderr
    assert json.loads(show.stdout)["status"] == "succeeded"
    with open_store(home) as store:
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
    nb = write_notebook(
        tmp_path / "too_slow.ipynb", "n = 1",
        "%%flyte_task sleepy(n: int) -> x: int --timeout 3s\nimport time\ntime.sleep(60)\nx = n",
    )
    log = tmp_path / "run.log"
    began = time.monotonic()
    driver = spawn([*CLI, "run", str(nb), "--cluster", "local", "--workers", "1", "--json"], home, log)
    procs.append(driver)
    rc, out = finish(driver, log, 55)
    elapsed = time.monotonic() - began
    assert rc == 1, out[-3000:]
    assert elapsed < 50
    printed = json_tail(out)
    task = printed["tasks"]["sleepy"]
    assert printed["status"] == "failed" and task["status"] == "failed"
    assert task["error"]["type"] == "TaskTimeout", task["error"]
    assert task["duration_s"] is not None and task["duration_s"] < 30, task
    assert task["attempts"] == 1

    wait_no_home_processes(home, 10, only_kernels=True)
