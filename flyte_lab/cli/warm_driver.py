"""The warm driver template: imports what `flyte-lab run` needs once, then forks one driver per `flyte-lab run`
(`cli/warm_client.py` is the other side).

Started by the shared executor (`engine/executor_process.py`) with its environment, which is the callers' by
construction (the executor's key), and stopped with it (SIGTERM, or the executor's death: PDEATHSIG). It
listens on `driver.sock` in the executor's 0700 folder, so only its user reaches it, and checks each peer's uid
as well. One SOCK_SEQPACKET message per request, `{"op": "cli", "argv", "env", "cwd", "umask"}` with the
caller's stdin, stdout and stderr attached; it answers `{"pid": PID}` once the driver is forked, or
`{"error": ...}` (the caller then runs the command itself).

Fork safety as in the kernel template (`engine/worker/kernel_template.unsafe_reason`): checked after the imports
and before each fork. The driver: the caller's descriptors on 0, 1, 2 (fresh line-buffered `sys.std*` over
them), the caller's environment, folder and umask, the signal handlers a fresh interpreter has, numpy's RNG
reseeded; then `cli.main.main(argv)`, whose exit code it sends back before exiting. A thread watches the
connection: if the caller goes away (killed), the driver is killed too, as an in-process driver would be.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from typing import Any

from flyte_lab.driver_template import preload, reap_children, reseed

# what `flyte-lab run` imports besides a driver's modules
CLI_MODULES = ("flyte_lab.cli.main", "flyte_lab.cli.launch_commands", "flyte_lab.cli.report", "rich.console",
               "rich.progress", "rich.table")

MAX_REQUEST = 1 << 20
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD, signal.SIGHUP)


def _peer_uid(conn: socket.socket) -> int:
    import struct

    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def serve(listener: socket.socket, fresh: dict[signal.Signals, Any]) -> tuple[socket.socket, dict[str, Any]] | None:
    """Fork drivers until told to stop (None); in a forked driver, its connection and request."""
    from flyte_lab.engine.worker.kernel_template import unsafe_reason

    signal.signal(signal.SIGCHLD, reap_children)
    while True:
        try:
            conn, _ = listener.accept()
        except InterruptedError:
            continue
        except OSError:
            return None  # the listener was closed (SIGTERM)
        fds: list[int] = []
        try:
            data, fds, _flags, _addr = socket.recv_fds(conn, MAX_REQUEST, 3)
            request = json.loads(data or b"{}")
            refusal = None
            if _peer_uid(conn) != os.getuid():
                refusal = "another user"
            elif request.get("op") != "cli" or len(fds) != 3:
                refusal = f"unknown request {request.get('op')!r} with {len(fds)} descriptors"
            else:
                why = unsafe_reason()
                refusal = f"unsafe to fork: {why}" if why else None
            if refusal is None and _fork(listener, fds, fresh) == 0:
                return conn, request
            conn.send(json.dumps({"error": refusal} if refusal else {"pid": _last_child}).encode())
        except (OSError, ValueError):
            pass  # that caller runs the command itself
        for fd in fds:  # the driver has its own copies
            os.close(fd)
        conn.close()


_last_child = 0


def _fork(listener: socket.socket, fds: list[int], fresh: dict[signal.Signals, Any]) -> int:
    global _last_child
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        _last_child = pid
        return pid
    listener.close()
    for sig, handler in fresh.items():
        signal.signal(sig, handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = open(0, encoding="utf-8", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)
    reseed()
    return 0


def _watch_caller(conn: socket.socket) -> None:
    """The caller went away (killed): so does this driver, without cleanup, as an in-process one would."""
    try:
        while conn.recv(16):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)


def _drive(conn: socket.socket, request: dict[str, Any]) -> None:
    from flyte_lab.cli.main import main as cli_main
    from flyte_lab.process_exit import exit_process

    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    os.umask(int(request["umask"]))
    sys.argv = ["flyte-lab", *request["argv"]]
    threading.Thread(target=_watch_caller, args=(conn,), daemon=True, name="flyte-lab-caller-watch").start()
    code = 1
    try:
        code = cli_main(list(request["argv"]))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            conn.send(json.dumps({"exit": code}).encode())
        except OSError:
            pass
    exit_process(code)


def main(argv: list[str]) -> None:
    from flyte_lab.private_process import die_with_parent, hide_memory

    hide_memory()  # it holds the user's environment, the source of `--env` secrets
    die_with_parent(signal.SIGTERM)  # the executor that started it is gone: so is it
    if os.getppid() != int(argv[1]):
        return
    fresh = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    if preload(CLI_MODULES) is not None:
        return
    os.chdir(os.path.dirname(argv[0]))  # bound by a relative name: a socket's path is limited to 107 bytes
    path = os.path.basename(argv[0])
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    tmp = f"{path}.{os.getpid()}"
    listener.bind(tmp)
    os.chmod(tmp, 0o600)
    listener.listen(16)
    os.replace(tmp, path)  # listening first: a caller never finds a socket nobody listens on yet
    signal.signal(signal.SIGTERM, lambda *_: listener.close())
    forked = serve(listener, fresh)
    if forked is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    _drive(*forked)
