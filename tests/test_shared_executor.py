"""The warm local executor (`--cluster shared`, the CLI's default): reused by later runs, one per user and
environment even when runs start together, private to its user, stopped when idle or asked, and a kill of it
mid-run costs nothing done twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from flyte_lab.engine.shared_executor import read_info, running
from tests.conftest import CLI, cli_env
from tests.ordinary_user import OrdinaryUser, ordinary_user
from tests.process_helpers import wait_for, wait_no_home_processes, write_notebook

pytestmark = pytest.mark.cluster
__all__ = ["ordinary_user"]  # the fixture


def marking_notebook(path: Path, marks: Path, slow_unless: Path | None = None) -> Path:
    """`first` and `second` each append their name to `marks` when they start; `second` sleeps 60 s unless
    the file `slow_unless` exists."""
    wait = f"if not os.path.exists({str(slow_unless)!r}):\n    time.sleep(60)\n" if slow_unless else ""
    return write_notebook(
        path, "",
        f"%%flyte_task first() -> a: int\nopen({str(marks)!r}, 'a').write('first\\n')\na = 1",
        f"%%flyte_task second(a: int) -> b: int\nimport os, time\nopen({str(marks)!r}, 'a').write('second\\n')\n"
        f"open({str(marks) + '.pid'!r}, 'w').write(str(os.getpid()))\n"
        f"{wait}b = a + 1")


def cli(home: Path, *args: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env={**cli_env(home), **env}, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def executor_processes(home: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any("flyte_lab.engine.executor_process" in part for part in proc.info["cmdline"] or []) and \
                    proc.environ().get("FLYTE_LAB_HOME") == str(home):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def outputs(home: Path, run_id: str) -> dict[str, object]:
    return json.loads(cli(home, "outputs", run_id, "--json").stdout)  # type: ignore[no-any-return]


def test_a_second_run_reuses_the_executor_and_gives_what_a_private_cluster_gives(home: Path, tmp_path: Path) -> None:
    nb = marking_notebook(tmp_path / "two.ipynb", tmp_path / "marks")
    first = cli(home, "run", str(nb), "--json")
    assert first.returncode == 0, first.stderr
    (executor,) = running(home)
    second = cli(home, "run", str(nb), "--json")
    assert second.returncode == 0, second.stderr
    assert [e.pid for e in running(home)] == [executor.pid]
    assert len(executor_processes(home)) == 1
    private = cli(home, "run", str(nb), "--cluster", "local", "--json")
    assert private.returncode == 0, private.stderr
    runs = [json.loads(r.stdout) for r in (first, second, private)]
    assert [r["cluster"] for r in runs] == ["shared", "shared", "local"]
    assert outputs(home, runs[1]["run_id"]) == outputs(home, runs[2]["run_id"]) == {"first": {"a": 1},
                                                                                    "second": {"b": 2}}


def test_runs_started_together_start_one_executor(home: Path, tmp_path: Path) -> None:
    nb = marking_notebook(tmp_path / "two.ipynb", tmp_path / "marks")
    procs = [subprocess.Popen([*CLI, "run", str(nb)], env=cli_env(home), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL) for _ in range(3)]
    seen: set[int] = set()
    while any(p.poll() is None for p in procs):  # every executor process that ever runs, while the runs do
        seen.update(p.pid for p in executor_processes(home))
        time.sleep(0.05)
    for proc in procs:
        _out, err = proc.communicate()
        assert proc.returncode == 0, err
    seen.update(p.pid for p in executor_processes(home))
    assert len(seen) == 1
    assert (tmp_path / "marks").read_text().count("second") == 3


def test_another_user_cannot_connect_to_the_executor(home: Path, tmp_path: Path,
                                                     ordinary_user: OrdinaryUser) -> None:
    nb = marking_notebook(tmp_path / "two.ipynb", tmp_path / "marks")
    assert cli(home, "run", str(nb)).returncode == 0
    (executor,) = running(home)
    assert executor.address.startswith("tls://127.0.0.1:")
    probe = textwrap.dedent(f"""
        import sys
        from distributed import Client
        from distributed.security import Security
        for name in ("tls.key", "tls.crt"):
            try:
                open({str(executor.folder)!r} + "/" + name).read()
                print("read", name)
            except OSError:
                pass
        for address, security in (({executor.address!r}, Security.temporary()),
                                  ({executor.address.replace("tls://", "tcp://")!r}, None)):
            try:
                Client(address, security=security, timeout=3).close()
                print("connected", address)
            except Exception:
                print("refused", address)
    """)
    # the control: the same probe, run by the executor's own user with its certificate, connects
    from distributed import Client

    with Client(executor.address, security=executor.security(), timeout=10, set_as_default=False) as client:
        assert client.scheduler_info()["workers"]
    done = ordinary_user.run([str(ordinary_user.python), "-c", probe], timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:-1] == [f"refused {executor.address}",
                                            f"refused {executor.address.replace('tls://', 'tcp://')}"]


def test_the_executor_runs_papermill_without_jsonschemas_format_checkers(home: Path, tmp_path: Path) -> None:
    """Its workers import papermill (nbformat, jsonschema) for the first task: the format checkers (a Lark grammar
    compiled at import, ~2 CPU-s) would be on a cold run's critical path and are never used there."""
    nb = marking_notebook(tmp_path / "two.ipynb", tmp_path / "marks")
    assert cli(home, "run", str(nb)).returncode == 0
    (executor,) = running(home)
    from distributed import Client

    def loaded() -> list[str]:  # runs in the executor's process: its workers are threads there
        import sys

        return sorted(name for name, module in sys.modules.items() if module is not None)

    with Client(executor.address, security=executor.security(), timeout=10, set_as_default=False) as client:
        (modules,) = set(map(tuple, client.run(loaded).values()))
    assert {"papermill", "nbformat", "jsonschema"} <= set(modules)
    assert not {"rfc3987_syntax", "lark", "webcolors", "fqdn", "isoduration"} & set(modules)


def test_a_killed_executor_fails_the_run_in_one_line_and_resume_redoes_only_what_did_not_finish(
        home: Path, tmp_path: Path) -> None:
    marks, fast = tmp_path / "marks", tmp_path / "fast"
    nb = marking_notebook(tmp_path / "slow.ipynb", marks, slow_unless=fast)
    run = subprocess.Popen([*CLI, "run", str(nb)], env=cli_env(home), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: marks.exists() and "second" in marks.read_text(), 120, "the second task to start")
        (executor,) = running(home)
        os.kill(executor.pid, signal.SIGKILL)
        out, err = run.communicate(timeout=60)  # the client gives up reconnecting after 10 s
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1
    run_id = out.split()[1]
    assert err.strip().splitlines()[-1] == (
        f"flyte-lab: error: run `{run_id}`: the shared executor (pid {executor.pid}) stopped while its tasks ran; "
        f"`flyte-lab resume {run_id}` reruns what did not finish")
    assert "Traceback" not in err
    # the kernels and template of the killed executor go with it
    wait_for(lambda: not executor_processes(home), 30, "the killed executor to be gone")
    wait_no_home_processes(home, 30)
    fast.touch()
    resumed = cli(home, "resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(resumed.stdout)
    assert record["status"] == "succeeded"
    assert {t: v["attempts"] for t, v in record["tasks"].items()} == {"first": 1, "second": 2}
    assert marks.read_text().splitlines() == ["first", "second", "second"]
    assert [e.pid for e in running(home)] != [executor.pid]


def test_the_executor_outlives_a_run_longer_than_its_idle_time_then_stops_and_leaves_nothing(
        home: Path, tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "nap.ipynb", "",
                        "%%flyte_task nap() -> a: int\nimport time\ntime.sleep(4)\na = 1")
    done = cli(home, "run", str(nb), FLYTE_LAB_EXECUTOR_IDLE="1")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: not executor_processes(home), 30, "the idle executor to stop")
    wait_no_home_processes(home, 30)
    assert not any(read_info(f) for f in (home / "executors").iterdir())
    assert json.loads(cli(home, "executor", "status", "--json").stdout)["executors"] == []


def test_executor_status_and_stop(home: Path, tmp_path: Path) -> None:
    nb = marking_notebook(tmp_path / "two.ipynb", tmp_path / "marks")
    assert cli(home, "run", str(nb)).returncode == 0
    (shown,) = json.loads(cli(home, "executor", "status", "--json").stdout)["executors"]
    assert psutil.pid_exists(shown["pid"]) and shown["address"].startswith("tls://127.0.0.1:")
    stopped = cli(home, "executor", "stop")
    assert stopped.stdout.strip() == "stopped 1 executor(s)"
    wait_no_home_processes(home, 30)
    assert cli(home, "executor", "status").stdout.strip() == "no executor runs (the next run starts one)"


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def driver_pid(home: Path, run_id: str) -> int:
    from flyte_lab.store import RunStore

    with RunStore.from_env(str(home), create=False) as store:
        return int(store.run_record(run_id)["driver_pid"])


def start_warm(home: Path, nb: Path) -> None:
    """A first run: it starts the executor, which starts its warm driver template."""
    assert cli(home, "run", str(nb)).returncode == 0
    (executor,) = running(home)
    wait_for(lambda: (executor.folder / "driver.sock").exists(), 60, "the warm driver template")


def test_a_warm_run_is_a_fork_of_the_driver_template_with_the_callers_output_and_exit_codes(
        home: Path, tmp_path: Path) -> None:
    nb = marking_notebook(tmp_path / "two.ipynb", tmp_path / "marks")
    start_warm(home, nb)
    proc = subprocess.Popen([*CLI, "run", str(nb), "--json"], env=cli_env(home), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    record = json.loads(out)  # stdout is the caller's: one JSON document
    assert record["status"] == "succeeded" and record["cluster"] == "shared"
    assert driver_pid(home, record["run_id"]) != proc.pid  # driven by a forked driver, not this process
    failing = write_notebook(tmp_path / "fails.ipynb", "",
                             "%%flyte_task boom() -> a: int\nraise ValueError('no')\na = 1")
    failed = cli(home, "run", str(failing))
    assert failed.returncode == 1 and "ValueError: no" in failed.stdout + failed.stderr
    refused = cli(home, "run", str(nb), "-p", "nope=1")
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr


def test_ctrl_c_reaches_a_warm_driver_and_killing_the_caller_kills_it(home: Path, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    nb = marking_notebook(tmp_path / "slow.ipynb", marks, slow_unless=tmp_path / "fast")
    start_warm(home, marking_notebook(tmp_path / "two.ipynb", tmp_path / "warm-marks"))
    for signum, code in ((signal.SIGINT, 130), (signal.SIGKILL, -9)):
        marks.unlink(missing_ok=True)
        proc = subprocess.Popen([*CLI, "run", str(nb)], env=cli_env(home), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: marks.exists() and "second" in marks.read_text(), 120, "the second task to start")
            run_id = proc.stdout.readline().split()[1] if proc.stdout else ""
            driver = driver_pid(home, run_id)
            assert driver != proc.pid
            proc.send_signal(signum)
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == code
        wait_for(lambda: gone(driver), 30, "the warm driver to end with its caller")
        # and the task's kernel with it: a resume must not find the task still running in the executor
        wait_for(lambda: gone(int(Path(f"{marks}.pid").read_text())), 30, "the task's kernel to be killed")
        shown = json.loads(cli(home, "show", run_id, "--json").stdout)
        # Ctrl-C cancels the run as an in-process driver does; a killed one leaves it for resume
        assert shown["status"] == ("cancelled" if signum == signal.SIGINT else "running")


def test_an_ordinary_users_run_is_warm_and_its_driver_template_refuses_other_users(
        ordinary_user: OrdinaryUser) -> None:
    """As users run it (not root, whom every permission check lets through): the executor's folder is the user's
    alone, a second run is forked from the user's warm driver template, and that template refuses a request from
    another uid (here root, the one user the folder's mode cannot keep out)."""
    user = ordinary_user
    marks = user.work / "marks"
    nb = marking_notebook(user.work / "two.ipynb", marks)
    os.chown(nb, 65534, 65534)
    cli_args = [str(user.python), "-m", "flyte_lab.cli.main", "run", str(nb), "--json"]
    first = user.run(cli_args, timeout=240)
    assert first.returncode == 0, first.stderr
    assert running(user.flyte_home) == []  # an executor is only ever one of the caller's own processes
    (folder,) = [path.parent for path in (user.flyte_home / "executors").glob("*/executor.json")]
    for path in (folder, folder.parent, folder / "tls.key"):
        assert path.stat().st_uid == 65534 and path.stat().st_mode & 0o077 == 0, path
    sock = folder / "driver.sock"
    wait_for(sock.exists, 60, "the user's warm driver template")
    proc = subprocess.Popen(user.argv(cli_args), env=user.env(), cwd=user.work, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    record = json.loads(out)
    assert record["status"] == "succeeded" and record["cluster"] == "shared"
    assert driver_pid(user.flyte_home, record["run_id"]) != proc.pid  # setpriv execs: proc.pid is the CLI's
    # root knocks with a well-formed request: refused for its uid, and nothing is forked
    import socket

    with open(os.devnull, "rb") as null, socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
        conn.connect(str(sock))
        request = {"op": "cli", "argv": ["run", str(nb)], "env": {}, "cwd": str(user.work), "umask": 0o22}
        socket.send_fds(conn, [json.dumps(request).encode()], [null.fileno()] * 3)
        conn.settimeout(30)
        assert json.loads(conn.recv(1 << 16)) == {"error": "another user"}
