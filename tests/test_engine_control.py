"""Controlling runs end to end with real processes: Ctrl-C, `cancel`, resume of a live run, a driver killed
inside its finishing transaction, fix-and-continue resume after an edit.

Tasks block on marker files the test creates, so the test chooses every interleaving; nothing sleeps to wait.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import CLI, cli_env
from tests.pg_server import WriteLock, query
from tests.process_helpers import (
    CANCEL_BOUND_S,
    DASK,
    PYTHON_START_S,
    accepts,
    finish,
    free_port,
    json_tail,
    only_run_id,
    open_store,
    procs,
    running_kernels,
    sleeping_notebook,
    spawn,
    time_cancel,
    wait_for,
    wait_no_home_processes,
    write_notebook,
)

pytestmark = pytest.mark.cluster

__all__ = ["procs"]  # a fixture, used by name

BLOCK = (
    "import os, time, uuid\n"
    "open(os.path.join(marks, f'{NAME}_started_{uuid.uuid4().hex}'), 'w').close()\n"
    "cap = time.time() + 120\n"
    "while not os.path.exists(os.path.join(marks, 'release')):\n"
    "    if time.time() > cap:\n"
    "        raise TimeoutError('never released')\n"
    "    time.sleep(0.05)\n"
)


def _blocking_notebook(tmp_path: Path, marks: Path, cache: bool = False) -> Path:
    flag = " --cache" if cache else ""
    return write_notebook(
        tmp_path / "blocking.ipynb", f"marks = {str(marks)!r}",
        f"%%flyte_task slow(marks: str) -> x: int{flag}\n" + BLOCK.replace("{NAME}", "slow") + "x = 1",
        "%%flyte_task after(x: int) -> y: int\ny = x + 1",
    )


def _started(marks: Path, name: str = "slow") -> int:
    return len(list(marks.glob(f"{name}_started_*")))


def _cli(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=cli_env(home), capture_output=True, text=True, timeout=timeout)


def _locks(home: Path) -> list[tuple[object, ...]]:
    return query(home, "SELECT cache_key, owner FROM cache_locks")


@pytest.mark.timeout(150)
def test_ctrl_c_cancels_the_run_kills_its_kernel_and_releases_its_cache_lock(
        home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    nb = _blocking_notebook(tmp_path, marks, cache=True)
    log = tmp_path / "run.log"
    driver = spawn([*CLI, "run", str(nb), "--cluster", "local"], home, log)
    procs.append(driver)
    wait_for(lambda: _started(marks) == 1, 60, "the cached task to start")
    run_id = only_run_id(home)
    assert run_id and len(_locks(home)) == 1

    driver.send_signal(signal.SIGINT)  # what Ctrl-C sends
    rc, out = finish(driver, log, 60)
    assert rc == 130, out
    assert f"run {run_id} cancelled" in out and "Traceback" not in out
    with open_store(home) as store:
        run = store.get_run(run_id)
    assert (run["status"], run["cancelled_by"]) == ("cancelled", "interrupt")
    assert run["tasks"]["slow"]["status"] == "cancelled"
    assert run["tasks"]["slow"]["error"] == {"type": "Cancelled", "message": "cancelled by an interrupt (Ctrl-C)"}
    assert run["tasks"]["after"]["status"] == "skipped"
    assert _locks(home) == []  # released at once, not left for its lease to lapse
    wait_no_home_processes(home, 15, only_kernels=True)

    # the next identical run does not wait for the cancelled one: it computes at once
    (marks / "release").touch()
    again = _cli(home, "run", str(nb), "--json", timeout=120)
    assert again.returncode == 0, again.stderr
    assert _started(marks) == 2


@pytest.mark.timeout(150)
def test_cancel_from_another_process_and_resume_of_a_live_run_is_refused(
        home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    nb = _blocking_notebook(tmp_path, marks)
    log = tmp_path / "run.log"
    driver = spawn([*CLI, "run", str(nb), "--cluster", "local"], home, log)
    procs.append(driver)
    wait_for(lambda: _started(marks) == 1, 60, "the task to start")
    run_id = only_run_id(home)
    assert run_id

    refused = _cli(home, "resume", run_id)
    assert refused.returncode == 2, refused.stderr
    assert f"pid {driver.pid} on host" in refused.stderr and "Traceback" not in refused.stderr
    assert _started(marks) == 1  # the body was not started a second time

    cancelled = _cli(home, "cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"run {run_id} cancelled" in cancelled.stdout
    rc, out = finish(driver, log, 60)
    assert rc == 1, out
    with open_store(home) as store:
        run = store.get_run(run_id)
    assert (run["status"], run["cancelled_by"]) == ("cancelled", "command")
    assert run["tasks"]["slow"]["status"] == "cancelled"
    assert run["tasks"]["slow"]["error"] == {"type": "Cancelled", "message": "cancelled by `flyte-lab cancel`"}
    wait_no_home_processes(home, 15, only_kernels=True)
    assert _cli(home, "cancel", run_id).stdout.strip() == f"run {run_id} already cancelled; nothing to cancel"


@pytest.mark.timeout(150)
def test_a_cancelled_run_leaves_no_attempt_running(
        home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    nb = write_notebook(
        tmp_path / "two_blocking.ipynb", f"marks = {str(marks)!r}",
        *(f"%%flyte_task {name}(marks: str) -> {name}_out: int\n" + BLOCK.replace("{NAME}", name) + f"{name}_out = 1"
          for name in ("left", "right")))
    log = tmp_path / "run.log"
    driver = spawn([*CLI, "run", str(nb), "--cluster", "local", "--workers", "2"], home, log)
    procs.append(driver)
    wait_for(lambda: _started(marks, "left") == _started(marks, "right") == 1, 90, "both tasks to start")
    run_id = only_run_id(home)
    assert run_id

    cancelled = _cli(home, "cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    rc, out = finish(driver, log, 60)
    assert rc == 1, out
    (marks / "release").touch()  # nothing may finish them now: their kernels are gone
    shown = _cli(home, "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    run = json_tail(shown.stdout)
    assert run["status"] == "cancelled"
    # every attempt the cancel stopped is closed as the run ended, not left `running` until a resume
    for name in ("left", "right"):
        [attempt] = run["attempts_detail"][name]
        assert attempt["status"] == "cancelled" and attempt["finished_at"], attempt
        assert attempt["error"]["type"] == "Cancelled", attempt
    wait_no_home_processes(home, 15, only_kernels=True)


@pytest.mark.timeout(200)
def test_driver_killed_inside_its_finishing_transaction_leaves_all_or_nothing(
        home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    nb = _blocking_notebook(tmp_path, marks, cache=True)
    log = tmp_path / "run.log"
    driver = spawn([*CLI, "run", str(nb), "--cluster", "local"], home, log)
    procs.append(driver)
    wait_for(lambda: _started(marks) == 1, 60, "the cached task to start")
    run_id = only_run_id(home)
    assert run_id

    # hold the store's write lock, then let the body finish: the driver's next write, the finishing
    # transaction, waits on the lock; kill the driver there
    blocker = WriteLock(home)
    (marks / "release").touch()
    wait_for(lambda: any((home / "artifacts" / "runs" / run_id / "slow").glob("*.outputs.json")), 60,
             "the task's outputs to be saved")
    wait_for(lambda: driver.poll() is None, 1, "the driver to be alive")
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=10)
    blocker.release()

    with open_store(home) as store:
        run = store.get_run(run_id)
    assert query(home, "SELECT count(*) FROM cache_entries") == [(0,)]
    assert run["tasks"]["slow"]["status"] == "running"  # nothing of the finish was committed
    assert run["tasks"]["slow"]["outputs"] == {}

    resumed = _cli(home, "resume", run_id, "--json", timeout=150)
    assert resumed.returncode == 0, resumed.stderr
    with open_store(home) as store:
        run = store.get_run(run_id)
        key = store.run_tasks(run_id)["slow"]["cache_key"]
        assert key and store.cache_get(key) is not None
    assert run["status"] == "succeeded"
    assert [a["status"] for a in run["attempts_detail"]["slow"]] == ["failed", "succeeded"]
    assert run["attempts_detail"]["slow"][0]["error"]["type"] == "DriverLost"
    assert _locks(home) == []


@pytest.mark.timeout(200)
def test_fix_and_continue_resume_reruns_only_what_changed(home: Path, tmp_path: Path) -> None:
    import nbformat

    marks = tmp_path / "marks"
    marks.mkdir()
    count = "import os, uuid\nopen(os.path.join(marks, f'{NAME}_started_{uuid.uuid4().hex}'), 'w').close()\n"
    nb = write_notebook(
        tmp_path / "edit.ipynb", f"marks = {str(marks)!r}",
        "%%flyte_task load(marks: str) -> raw: int\n" + count.replace("{NAME}", "load") + "raw = 20",
        "%%flyte_task stats(raw: int, marks: str) -> mean: float\n" + count.replace("{NAME}", "stats")
        + "mean = raw / 0",
        "%%flyte_task report(mean: float, marks: str) -> text: str\n" + count.replace("{NAME}", "report")
        + "text = f'mean={mean}'",
        "%%flyte_task other(raw: int, marks: str) -> doubled: int\n" + count.replace("{NAME}", "other")
        + "doubled = raw * 2",
    )
    first = _cli(home, "run", str(nb), "--json", timeout=120)
    assert first.returncode == 1
    # the fix: only `stats` changes
    book = nbformat.read(nb, as_version=4)
    book.cells[2].source = book.cells[2].source.replace("raw / 0", "raw / 2")
    nbformat.write(book, nb)

    resumed = _cli(home, "resume", only_run_id(home) or "", timeout=150)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "reusing load, other (unchanged)" in resumed.stderr
    assert "rerunning stats (it was failed)" in resumed.stderr
    assert "rerunning report (downstream of stats)" in resumed.stderr
    assert [_started(marks, n) for n in ("load", "stats", "report", "other")] == [1, 2, 1, 1]

    # an edit to a task that had succeeded reruns it and what follows it, nothing else
    book.cells[1].source = book.cells[1].source.replace("raw = 20", "raw = 40")
    nbformat.write(book, nb)
    again = _cli(home, "resume", only_run_id(home) or "", "--json", timeout=150)
    assert again.returncode == 0, again.stderr
    assert "rerunning load (its code, setup cells or inputs changed)" in again.stderr
    assert [_started(marks, n) for n in ("load", "stats", "report", "other")] == [2, 3, 2, 2]
    with open_store(home) as store:
        outputs = store.run_outputs(only_run_id(home) or "")
    assert outputs["report"]["text"] == "mean=20.0" and outputs["other"]["doubled"] == 80



def _dask_cluster(home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> str:
    """A `dask scheduler` and one `dask worker` process (under its nanny) with room for two tasks at once."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs.append(spawn([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address",
                        "127.0.0.1:0"], home, tmp_path / "scheduler.log"))
    wait_for(lambda: accepts(port), 30, "the Dask scheduler to listen")
    procs.append(spawn([DASK, "worker", address, "--host", "127.0.0.1", "--nthreads", "2", "--no-dashboard"], home,
                       tmp_path / "worker.log"))

    def joined() -> bool:
        from distributed import Client

        with Client(address, timeout=5) as client:
            return len(client.scheduler_info()["workers"]) == 1

    wait_for(joined, 60, "the worker to join", interval=0.5)
    return address


@pytest.mark.timeout(200)
@pytest.mark.parametrize("cluster", ["local", "tcp"])
def test_cancel_from_the_cli_stops_the_run_and_its_kernels_within_about_a_second(
        cluster: str, home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    nb = sleeping_notebook(tmp_path / "sleepers.ipynb", marks)
    where = (["--cluster", "local", "--workers", "2"] if cluster == "local"
             else ["--cluster", _dask_cluster(home, tmp_path, procs), "--shared-fs"])
    log = tmp_path / "run.log"
    driver = spawn([*CLI, "run", str(nb), *where], home, log)
    procs.append(driver)
    kernels = wait_for(lambda: running_kernels(marks, driver, 2), 90, "both sleeping tasks' kernels")
    run_id = only_run_id(home)
    assert run_id

    issued = time.monotonic()
    canceller = spawn([*CLI, "cancel", run_id], home, tmp_path / "cancel.log")
    procs.append(canceller)
    timings = time_cancel(home, run_id, kernels, {"the driver": driver.pid, "`flyte-lab cancel`": canceller.pid})
    # from the request in the store: the engine's own doing (the old driver read it at its next lease renewal,
    # up to 20 s later); from the command's start: one Python start-up more
    assert max(timings.values()) <= CANCEL_BOUND_S, timings
    assert time.monotonic() - issued <= CANCEL_BOUND_S + PYTHON_START_S, timings
    rc, out = finish(canceller, tmp_path / "cancel.log", 5)
    assert rc == 0 and f"run {run_id} cancelled" in out, out
    rc, out = finish(driver, log, 5)
    assert rc == 1 and "Traceback" not in out, out
    with open_store(home) as store:
        run = store.get_run(run_id)
    assert {name: task["status"] for name, task in run["tasks"].items()} == {
        "left": "cancelled", "right": "cancelled", "both": "skipped"}
    assert run["tasks"]["left"]["error"]["type"] == "Cancelled"
    if cluster == "local":
        wait_no_home_processes(home, 10, only_kernels=True)  # not even an idle pooled kernel
