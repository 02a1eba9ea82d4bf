"""`flyte-lab run` handed to a warm driver: the thin side, in the `flyte-lab` process itself (stdlib only).

A `flyte-lab run` on the shared executor spends most of a short run importing the engine (Dask, SQLAlchemy,
nbformat, jupyter_client) before it records anything. When the executor for this environment runs, it keeps
a driver template that has imported all that (`cli/warm_driver.py`, listening on `driver.sock` in the
executor's 0700 folder); this process sends it its arguments, environment, working folder and umask with its
stdin, stdout and stderr, and the template forks a driver that runs `flyte-lab run` exactly as this process
would have, writing to this terminal. This process then only relays: Ctrl-C, SIGTERM and SIGHUP go to the
driver, the driver's exit code becomes ours, and if this process dies the driver dies with it (it watches the
connection), so killing `flyte-lab run` still kills its driver, as `resume` expects.

Anything else (another command, `--cluster` other than shared, no template yet, `FLYTE_LAB_WARM_CLI=0`) runs
in this process as before; the template's first answer comes before anything is done, so falling back is
always safe.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path

MAX_REPLY = 4096
RELAYED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
    return None


def socket_path(argv: list[str]) -> Path | None:
    """Where the warm driver for this `flyte-lab` command would listen, if the command can use one."""
    if not argv or argv[0] != "run" or os.environ.get("FLYTE_LAB_WARM_CLI") == "0":
        return None
    if any(a in ("-h", "--help", "--debug") for a in argv) or (_option(argv, "--cluster") or "shared") != "shared":
        return None
    from flyte_lab.engine.clusters import local_workers
    from flyte_lab.engine.shared_executor import executor_key, executors_root

    try:
        workers = local_workers(int(_option(argv, "--workers") or 0) or None)
    except ValueError:
        return None  # argparse says what is wrong, in this process
    home = Path(os.environ.get("FLYTE_LAB_HOME") or Path.home() / ".flyte_lab").expanduser()
    path = executors_root(home) / executor_key(workers) / "driver.sock"
    return path if path.exists() else None


def delegate(argv: list[str]) -> int | None:
    """Run `flyte-lab ARGV` in a warm driver; its exit code, or None when it must run here instead."""
    path = socket_path(argv)
    if path is None:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    folder = -1
    try:
        # through the folder's descriptor: a socket's path is limited to 107 bytes, FLYTE_LAB_HOME is not
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        conn.connect(f"/proc/self/fd/{folder}/{path.name}")
        umask = os.umask(0o077)
        os.umask(umask)
        request = {"op": "cli", "argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "umask": umask}
        socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
        answer = json.loads(conn.recv(MAX_REPLY) or b"{}")
    except (OSError, ValueError):
        conn.close()
        return None  # no template there (stopped, or starting): nothing was done yet
    finally:
        if folder != -1:
            os.close(folder)
    pid = answer.get("pid")
    if not isinstance(pid, int):
        conn.close()
        return None
    return _relay(conn, pid)


def _relay(conn: socket.socket, pid: int) -> int:
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in RELAYED:
        signal.signal(signum, forward)
    while True:
        try:
            data = conn.recv(MAX_REPLY)
        except InterruptedError:
            continue
        if not data:
            print(f"flyte-lab: error: the run's driver (pid {pid}) ended without an exit code", file=sys.stderr)
            return 1
        code = json.loads(data).get("exit")
        if isinstance(code, int):
            return code
