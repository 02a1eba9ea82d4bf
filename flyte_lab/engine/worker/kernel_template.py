"""The template process: imports a kernel's code once, then forks one fresh kernel per request.

Started by `engine/worker/forked_kernels.py` as the kernelspec's interpreter with its interpreter options
(`INTERPRETER OPTIONS -c "... main()" FD`), with the environment a normal kernel of this kernelspec would get
(secrets already scrubbed). FD is this end of a socketpair: the
only way in (nothing on the filesystem to connect to). Requests and replies are JSON lines:

- `{"op": "preload", "modules": [...]}`: import the notebook's setup-cell modules here, once per worker;
- `{"op": "fork", "connection_file": PATH, "cwd": DIR, "argv": [...]}`: fork a kernel, reply with its pid;
- `{"op": "retire"}`: fork no more, exit once every kernel forked here has exited.

EOF without `retire` means the worker died: the template kills its kernels' process groups and exits.

When forking is safe: no Python thread but the main one, no zmq context and no asyncio loop made here before
the fork (the child would inherit their state half-copied). Native threads are allowed only where the library
that owns them re-creates them after fork: OpenBLAS (its threads carry the process's own name, so they are
counted against the OpenBLAS libraries mapped) and jemalloc's background thread (pyarrow). A preload that
breaks the rule makes the template say `unsafe`; the worker then replaces it with one that skips that module,
and the task's kernel imports it itself.

The child: `setsid` first (signals go to its own group), default signal handlers, stdio on /dev/null, RNGs
reseeded (a fork copies their state), then a normal `IPKernelApp` on the given connection file, whose parent
poller watches this template (the value ipykernel read from `JPY_PARENT_PID` at import is the worker's, so it
is passed explicitly). It leaves with `os._exit` after running the atexit handlers, never back into this loop.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

# what every kernel imports on its way to ready: done here once, so a fork starts with it in memory
KERNEL_MODULES = (
    "ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.iostream", "ipykernel.comm",
    "ipykernel.heartbeat", "ipykernel.displayhook", "ipykernel.debugger", "IPython.core.interactiveshell",
    "IPython.core.completer", "IPython.core.magics", "IPython.core.formatters", "jupyter_client.session",
    "zmq.asyncio", "tornado.ioloop", "comm", "flyte_lab.engine.task_runtime",
    # imported lazily on the way to ready (found by profiling a forked kernel's start-up)
    "psutil", "IPython.core.oinspect", "IPython.core.completerlib", "IPython.core.debugger", "pdb",
    "tornado.platform.asyncio", "IPython.extensions.storemagic", "jupyter_client.localinterfaces",
)
NATIVE_FORK_AWARE = ("jemalloc_bg_thd",)


def unsafe_reason() -> str | None:
    """Why forking this process now could hand a child half-copied state, or None when it is safe."""
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if others:
        return f"Python threads are running ({', '.join(others)})"
    zmq = sys.modules.get("zmq")
    if zmq is not None and getattr(zmq.Context, "_instance", None) is not None:
        return "a zmq context exists"
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None:
        policy = asyncio.events._event_loop_policy
        local = getattr(policy, "_local", None)
        if getattr(local, "_loop", None) is not None:
            return "an asyncio event loop was created"
    return _native_threads_reason()


def _native_threads_reason() -> str | None:
    try:
        tids = [t for t in os.listdir("/proc/self/task") if int(t) != os.getpid()]
    except OSError:
        return None  # no /proc: only Python threads can be checked
    names = []
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            continue  # the thread ended meanwhile
    unknown = [n for n in names if n not in NATIVE_FORK_AWARE]
    if not unknown:
        return None
    allowed = _openblas_libraries() * max(1, (os.cpu_count() or 1))
    if len(unknown) <= allowed:
        return None
    return f"{len(unknown)} native threads of unknown owners are running ({', '.join(sorted(set(unknown)))})"


def _openblas_libraries() -> int:
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return 0
    return len(paths)


def preload(modules: list[str]) -> dict[str, Any]:
    """Import each module (errors kept, not raised), then report whether forking is still safe."""
    failed: dict[str, str] = {}
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # a setup import may raise anything, SystemExit included
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        loaded.append(name)
        reason = unsafe_reason()
        if reason:
            return {"loaded": loaded, "failed": failed, "unsafe": f"importing `{name}`: {reason}", "module": name}
    gc.collect()
    gc.freeze()  # objects made so far are never written by the collector: fewer copy-on-write pages per fork
    return {"loaded": loaded, "failed": failed, "unsafe": None}


_children: set[int] = set()


def reaped() -> Iterator[int]:
    """Collect every child process that has ended, without waiting: their pids (so none stays a zombie)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid


def _reap(*_: Any) -> None:
    for pid in reaped():
        _children.discard(pid)


def _kill_children() -> None:
    for pid in list(_children):
        try:
            os.killpg(pid, signal.SIGKILL)  # the kernel's whole group: it may have started processes
        except OSError:
            pass


def fork_kernel(request: dict[str, Any], channel: socket.socket) -> int:
    started, setsid_done = os.pipe()
    pid = os.fork()
    if pid:
        _children.add(pid)
        os.close(setsid_done)
        # reply only once the child leads its own process group: a caller that signals the group (killpg) must
        # never reach the template's
        os.read(started, 1)
        os.close(started)
        return pid
    code = 1
    try:
        channel.close()
        os.close(started)
        os.setsid()
        os.write(setsid_done, b"1")
        os.close(setsid_done)
        _become_kernel(request)
        code = 0
    finally:
        os._exit(code)


def _become_kernel(request: dict[str, Any]) -> None:
    template = os.getppid()
    for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    os.chdir(request.get("cwd") or os.getcwd())
    os.environ["JPY_PARENT_PID"] = str(template)
    _reseed()
    import atexit

    from flyte_lab.engine.worker import kernel_app

    sys.argv = [sys.executable, "-m", "ipykernel_launcher", "-f", request["connection_file"]]
    try:
        kernel_app.become_kernel(request["connection_file"], list(request.get("argv", [])), template)
    finally:
        atexit._run_exitfuncs()


def _reseed() -> None:
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def serve(channel: socket.socket) -> None:
    signal.signal(signal.SIGCHLD, _reap)  # kernels are our children: reap them as they exit
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the worker's terminal is not for us
    reader = channel.makefile("rb")
    for line in reader:
        request = json.loads(line)
        if request.get("op") == "preload":
            reply: dict[str, Any] = preload(list(request.get("modules", [])))
        elif request.get("op") == "retire":
            _retire()
            return
        elif request.get("op") == "fork":
            reply = _fork(request, channel)
        else:
            reply = {"error": f"unknown request {request.get('op')!r}"}
        channel.sendall(json.dumps(reply).encode() + b"\n")
    _kill_children()  # EOF without `retire`: the worker is gone, and so is every use of its kernels


def _fork(request: dict[str, Any], channel: socket.socket) -> dict[str, Any]:
    from flyte_lab.engine.worker import kernel_app

    try:
        # the configuration every fork for these arguments shares, read here once
        kernel_app.prepare(list(request.get("argv", [])), os.getpid())
    except Exception as exc:  # e.g. a broken ipython_kernel_config.py: the worker starts that kernel itself
        return {"error": f"cannot configure a kernel: {type(exc).__name__}: {exc}"}
    reason = unsafe_reason()  # after prepare: a config file may have started a thread
    return {"error": f"unsafe to fork: {reason}"} if reason else {"pid": fork_kernel(request, channel)}


def _retire() -> None:
    """Replaced by another template: stay until the kernels still running tasks have finished."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _warm_caches() -> None:
    """Work every kernel repeats with the same answer: the machine's addresses (jupyter_client reads them when
    it loads the connection file). Computed once here, inherited by each fork."""
    from IPython.core.inputtransformer2 import TransformerManager
    from jupyter_client import localinterfaces

    localinterfaces.localhost()
    # every cell a kernel runs goes through IPython's input transformers, which compile their (and tokenize's)
    # regular expressions on first use: compiled here, they sit in `re`'s cache of every fork
    TransformerManager().transform_cell("x = 1\nif x:\n    y = f'{x}'  # comment\n%time x\n")


def main() -> None:
    channel = socket.socket(fileno=int(sys.argv[1]))
    result = preload(list(KERNEL_MODULES))
    _warm_caches()
    channel.sendall(json.dumps({"ready": os.getpid(), **result}).encode() + b"\n")
    if result["unsafe"] is None:
        serve(channel)


if __name__ == "__main__":
    main()
