"""The launch template: a process that imported the engine once, and forks each run the Jupyter server launches.

A run launched from Jupyter used to start as a new interpreter (`python -m flyte_lab.run_launch`) that spent
most of a short run importing the engine (Dask, papermill, SQLAlchemy...) before it recorded anything. This
process does those imports once; each launch is a fork of it that runs `run_launch.main()`, the same code a
spawned launcher runs, on the same stdin/stdout/stderr protocol.

Started by `server/forked_launches.py` as `python -c "... main()" FD` with the Jupyter server's environment,
folder and interpreter, in a session of its own. FD is this end of a SOCK_SEQPACKET socketpair: the only way in
(nothing on the filesystem to connect to), one message per request:

- at start it says `{"ready": PID, "unsafe": REASON | null}`;
- `{"op": "launch"}` with three file descriptors attached (`socket.send_fds`: the run's stdin, stdout and
  log) forks a run and answers `{"pid": PID}`, or `{"error": ...}` when it must not fork;
- EOF (the server stopped or died) ends the template. The runs it forked go on: each leads a session of its own.

What it fixes at its start, for every run it forks: the environment (the source of the runs' `--env` secrets,
hence non-dumpable from its first line), the working folder, and the modules on `sys.path` as they were then
(the server restarts it when any of those differs at a launch). `sys.path` is a fresh interpreter's without
the working folder first (`-c` would put it there), so a folder in the Jupyter root named like one of the
engine's modules cannot shadow it.

When forking is safe: the check of `engine/worker/kernel_template.py` (only the main Python thread, no zmq
context, no asyncio loop, no native thread of an owner that does not re-create it after fork), made after the
imports and again before each fork. The imports start no Dask client or cluster and open no store.

The child: closes the socket (the server must see EOF when the template dies, not when its last run ends),
`setsid` first (its own session, as `start_new_session=True` gave a spawned launcher: Ctrl-C or a restart of the
server does not reach it), the signal handlers a fresh interpreter has, the three descriptors on 0, 1 and 2,
RNGs reseeded, then back up the stack to `main()`, which runs `run_launch.main()` and exits as a spawned launcher
does (`process_exit.exit_process`: non-daemon threads joined, atexit handlers run).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from typing import Any

from flyte_lab.driver_template import preload, reap_children, reseed

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD)
MAX_MESSAGE = 4096


def serve(channel: socket.socket, fresh: dict[signal.Signals, Any]) -> bool:
    """Answer launches until EOF (False); True in a forked run, once it is ready to run `run_launch.main()`."""
    signal.signal(signal.SIGCHLD, reap_children)  # runs are our children until we exit: no zombies meanwhile
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # our own session already; a stray Ctrl-C is not for us
    while True:
        data, fds, _flags, _addr = socket.recv_fds(channel, MAX_MESSAGE, 3)
        if not data:
            return False
        refusal = _refusal(json.loads(data), fds)
        reply: dict[str, Any] = {"error": refusal}
        if refusal is None:
            pid = _fork(channel, fds, fresh)
            if pid == 0:
                return True
            reply = {"pid": pid}
        for fd in fds:  # the run has its own copies now
            os.close(fd)
        channel.send(json.dumps(reply).encode())


def _refusal(request: dict[str, Any], fds: list[int]) -> str | None:
    from flyte_lab.engine.worker.kernel_template import unsafe_reason

    if request.get("op") != "launch" or len(fds) != 3:
        return f"unknown request {request.get('op')!r} with {len(fds)} descriptors"
    reason = unsafe_reason()  # as after the imports: nothing here should have started a thread since
    return f"unsafe to fork: {reason}" if reason else None


def _fork(channel: socket.socket, fds: list[int], fresh: dict[signal.Signals, Any]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    started, setsid_done = os.pipe()
    pid = os.fork()
    if pid:
        os.close(setsid_done)
        # answer only once the child leads its own session: a signal to the run's group never reaches ours
        os.read(started, 1)
        os.close(started)
        return pid
    channel.close()
    os.close(started)
    os.setsid()
    os.write(setsid_done, b"1")
    os.close(setsid_done)
    for sig, handler in fresh.items():
        signal.signal(sig, handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    reseed()
    return 0


def main() -> None:
    from flyte_lab.private_process import hide_memory

    hide_memory()  # holds the Jupyter server's environment, the source of the runs' secrets
    fresh = {sig: signal.getsignal(sig) for sig in _SIGNALS}  # what a new interpreter has: each run gets them back
    channel = socket.socket(fileno=int(sys.argv[1]))
    unsafe = preload(("flyte_lab.run_launch",))
    channel.send(json.dumps({"ready": os.getpid(), "unsafe": unsafe}).encode())
    if unsafe is not None or not serve(channel, fresh):
        return
    from flyte_lab.process_exit import exit_process
    from flyte_lab.run_launch import main as launch

    del sys.argv[1:]  # the template's socket number means nothing here
    exit_process(launch())


if __name__ == "__main__":
    main()
