"""No other local user can run code in a run's kernels, and a run leaves no connection file behind.

Kernels listen on 127.0.0.1, which every local user reaches: only the HMAC key of a kernel's connection file
stands between them and the run's code, data and artifact key. Real `flyte-lab run` processes, real forked
and spawned kernels; the attacker is a separate process, run as uid 65534 where this machine allows it
(`tests/zmtp_client.py`: the standard library only, since that user's interpreter has no pyzmq), that finds
the kernels' ports by their listening sockets, as any user can, and sends unsigned `execute_request`s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from jupyter_client import BlockingKernelClient

from tests.conftest import CLI
from tests.process_helpers import (
    finish,
    home_processes,
    procs,
    spawn,
    wait_for,
    wait_no_home_processes,
    write_notebook,
)

pytestmark = pytest.mark.cluster

__all__ = ["procs"]  # a fixture, used by name

DEBIAN_PYTHON = "/usr/bin/python3"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
LOOPBACK = {"127.0.0.1", "::1"}


def blocking_notebook(tmp_path: Path, marks: Path) -> Path:
    """One task that says its kernel's pid, then waits for `release`."""
    return write_notebook(
        tmp_path / "blocking.ipynb", f"marks = {str(marks)!r}",
        "%%flyte_task b(marks: str) -> y: int\n"
        "import os, time\n"
        "with open(os.path.join(marks, 'b_started.tmp'), 'w') as f:\n"
        "    f.write(str(os.getpid()))\n"
        "os.rename(os.path.join(marks, 'b_started.tmp'), os.path.join(marks, 'b_started'))\n"
        "cap = time.time() + 150\n"
        "while not os.path.exists(os.path.join(marks, 'release')):\n"
        "    if time.time() > cap:\n"
        "        raise TimeoutError('never released')\n"
        "    time.sleep(0.05)\n"
        "y = 1",
    )


def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The run's temporary folder (TMPDIR, inherited by the CLI), so that what it leaves there can be listed."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    return tmp


def start_blocked_run(tmp_path: Path, home: Path, procs: list[subprocess.Popen[bytes]], cluster: str = "local"
                      ) -> tuple[subprocess.Popen[bytes], Path, Path, int]:
    """A `flyte-lab run` whose task is running and blocked; (driver, its log, the marks folder, task kernel pid).
    On `--cluster local` the kernels are the driver's own (their folders name it); on `shared`, the executor's."""
    marks = tmp_path / "marks"
    marks.mkdir()
    log = tmp_path / "run.log"
    driver = spawn([*CLI, "run", str(blocking_notebook(tmp_path, marks)), "--cluster", cluster], home, log)
    procs.append(driver)

    def started() -> int | None:
        if driver.poll() is not None:
            raise AssertionError(f"the run ended early ({driver.returncode}):\n{log.read_text()[-3000:]}")
        path = marks / "b_started"
        return int(path.read_text()) if path.exists() else None

    return driver, log, marks, wait_for(started, 120, "the task to start")


def listening(pid: int) -> list[psutil._common.pconn]:
    try:
        return [c for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    except psutil.NoSuchProcess:
        return []


def ready_kernels(home: Path, task_pid: int) -> dict[int, list[int]]:
    """Kernel pid -> its listening ports, once the task's kernel and (unless pooling is off) a pooled one listen."""
    wanted = 1 if os.environ.get("FLYTE_LAB_KERNEL_POOL") == "0" else 2

    def found() -> dict[int, list[int]] | None:
        kernels = {p.pid: sorted(c.laddr.port for c in listening(p.pid))
                   for p in home_processes(home, only_kernels=True)}
        kernels = {pid: ports for pid, ports in kernels.items() if len(ports) >= 4}  # shell, iopub, stdin, control
        return kernels if task_pid in kernels and len(kernels) >= wanted else None

    return wait_for(found, 90, f"the task's kernel and {wanted - 1} pooled kernel to listen")


def connection_files(tmp: Path) -> dict[Path, dict[str, Any]]:
    """Every connection file (any JSON naming a shell port) under the run's temporary folder."""
    found = {}
    for path in tmp.rglob("*.json"):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and "shell_port" in info:
            found[path] = info
    return found


def send_unsigned(code: str, ports: list[int]) -> dict[str, list[int]]:
    """What a local user without the key can do: send `code` unsigned to each port (as uid 65534 if possible)."""
    source = (Path(__file__).parent / "zmtp_client.py").read_text()
    if os.geteuid() == 0 and shutil.which("setpriv") and os.access(DEBIAN_PYTHON, os.X_OK):
        argv = [*NOBODY, DEBIAN_PYTHON, "-c", source]
    else:  # not root here: another process of the same user, which has no key either
        argv = [sys.executable, "-c", source]
    out = subprocess.run([*argv, code, *map(str, ports)], capture_output=True, text=True, timeout=60, cwd="/",
                         env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    sent: dict[str, list[int]] = json.loads(out.stdout)
    return sent


def signed_client(info: dict[str, Any]) -> BlockingKernelClient:
    client = BlockingKernelClient()
    client.load_connection_info(info)
    client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    return client


def run_signed(client: BlockingKernelClient, code: str) -> None:
    msg_id = client.execute(code, store_history=False)
    while True:
        reply = client.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            assert reply["content"]["status"] == "ok", reply["content"]
            return


def marker_code(marks: Path, kind: str) -> str:
    return f"import os; open(os.path.join({str(marks)!r}, '{kind}-%d' % os.getpid()), 'w').close()"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("pooling", ["1", "0"], ids=["pooled", "started-per-task"])
def test_a_runs_kernels_run_only_signed_messages(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 procs: list[subprocess.Popen[bytes]], pooling: str) -> None:
    """Pooled (forked) kernels, and the task's kernel taken from the pool; with pooling off, a task's kernel
    started by its own kernel manager."""
    monkeypatch.setenv("FLYTE_LAB_KERNEL_POOL", pooling)
    tmp = private_tmp(tmp_path, monkeypatch)
    driver, log, marks, task_pid = start_blocked_run(tmp_path, home, procs)
    kernels = ready_kernels(home, task_pid)
    files = connection_files(tmp)
    # (jupyter_client sets the folder's sticky bit: only the owner may remove its files; no access is added)
    modes = {path: (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) for path in files}

    # the attacker: every listening port of every kernel, the running task's included
    attack = send_unsigned(marker_code(marks, "unsigned"), [p for ports in kernels.values() for p in ports])
    assert attack["sent"], attack  # the shell and control sockets took the message

    # with the key, the same kernels do run code: the pooled ones now (two round trips: anything that came
    # before has been handled), the task's once its cell is done (queued behind it, ahead of the next cell)
    by_shell = {info["shell_port"]: info for info in files.values()}
    clients = {}
    try:
        for pid, ports in kernels.items():
            info = next((by_shell[p] for p in ports if p in by_shell), None)
            assert info is not None, f"kernel {pid} (ports {ports}) has no connection file in {tmp}: {list(files)}"
            clients[pid] = signed_client(info)
            if pid == task_pid:
                clients[pid].execute(marker_code(marks, "signed"), store_history=False)
            else:
                run_signed(clients[pid], marker_code(marks, "signed"))
                run_signed(clients[pid], "pass")
        (marks / "release").touch()
        rc, out = finish(driver, log, 90)
    finally:
        for client in clients.values():
            client.stop_channels()
    assert rc == 0, out[-3000:]

    assert sorted(p.name for p in marks.glob("signed-*")) == sorted(f"signed-{pid}" for pid in kernels)
    assert list(marks.glob("unsigned-*")) == [], "a kernel ran an unsigned message"

    # while the run ran: each connection file private, in a private folder of the driver, with a key of its own
    assert files, f"no connection file under {tmp}"
    for path, info in files.items():
        assert re.fullmatch(rf"flyte-lab-kernels-{driver.pid}-\w+", path.parent.name), path
        assert modes[path] == (0o600, 0o700), (path, [oct(m) for m in modes[path]])
        assert info["key"] and info["signature_scheme"] == "hmac-sha256", (path, info)
        assert info["ip"] == "127.0.0.1", (path, info)
    assert len({info["key"] for info in files.values()}) == len(files), "two kernels share a key"

    # and after it: nothing
    wait_no_home_processes(home, 30)
    assert connection_files(tmp) == {}
    assert list(tmp.glob("flyte-lab-kernels-*")) == []
    assert list(tmp.glob("flyte-lab-worker-*")) == []  # the dead driver's worker folder held the artifact key


@pytest.mark.timeout(240)
def test_a_killed_drivers_connection_files_are_keyed_and_swept(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, procs: list[subprocess.Popen[bytes]]) -> None:
    tmp = private_tmp(tmp_path, monkeypatch)
    driver, _, _, task_pid = start_blocked_run(tmp_path, home, procs)
    ready_kernels(home, task_pid)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=10)
    wait_no_home_processes(home, 30)  # its kernels follow it (they watch their parent)

    left = connection_files(tmp)
    for path, info in left.items():  # what SIGKILL leaves: keyed, private, in a folder naming the dead driver
        assert info["key"], f"a keyless connection file was left behind: {path}"
        assert re.fullmatch(rf"flyte-lab-kernels-{driver.pid}-\w+", path.parent.name), path
        assert path.parent.stat().st_mode & 0o777 == 0o700, path

    # the next run of this user sweeps the folders of drivers that are gone, and leaves nothing of its own
    nb = write_notebook(tmp_path / "small.ipynb", "n = 2", "%%flyte_task double(n: int) -> m: int\nm = 2 * n")
    log = tmp_path / "next.log"
    nxt = spawn([*CLI, "run", str(nb), "--cluster", "local"], home, log)
    procs.append(nxt)
    rc, out = finish(nxt, log, 120)
    assert rc == 0, out[-3000:]
    wait_no_home_processes(home, 30)
    assert connection_files(tmp) == {}
    assert list(tmp.glob("flyte-lab-kernels-*")) == []
    assert list(tmp.glob("flyte-lab-worker-*")) == []  # the dead driver's worker folder held the artifact key


@pytest.mark.timeout(240)
@pytest.mark.parametrize("cluster", ["local", "shared"])
def test_everything_a_run_opens_listens_on_loopback(cluster: str, home: Path, tmp_path: Path,
                                                    procs: list[subprocess.Popen[bytes]]) -> None:
    driver, log, marks, task_pid = start_blocked_run(tmp_path, home, procs, cluster)
    ready_kernels(home, task_pid)
    sockets = {(p.pid, " ".join(p.cmdline())[:80], c.laddr.ip, c.laddr.port)
               for p in home_processes(home) for c in listening(p.pid)}
    server = driver.pid
    if cluster == "shared":
        from flyte_lab.engine.shared_executor import running

        (executor,) = running(home)
        server = executor.pid
    cluster_sockets = [s for s in sockets if s[0] == server]
    (marks / "release").touch()
    rc, out = finish(driver, log, 90)
    assert rc == 0, out[-3000:]
    # the scheduler's and the local workers' HTTP servers (/metrics); on `shared`, its TLS listener as well
    assert len(cluster_sockets) >= (2 if cluster == "local" else 3), sockets
    assert {s for s in sockets if s[2] not in LOOPBACK} == set()
