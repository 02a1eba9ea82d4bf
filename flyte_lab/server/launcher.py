"""Runs launched from Jupyter run in their own process, exactly like `flyte-lab run`.

Why a child process and not a thread of the Jupyter server: the run outlives the request, the browser
tab and the server itself (a restart or Ctrl-C of `jupyter lab` leaves it running: it has its own
session), its local Dask cluster and kernels do not share the server's event loop, GIL or memory,
and its driver holds the run's lease under its own pid, so `resume` and `cancel` behave as for the CLI.

How it starts: forked from the launch template (`server/launch_template.py`, a process that imported the engine
once; the server's side is `server/forked_launches.py`), which saves the ~1.5 s of imports a new interpreter
spends before the run is even recorded. Without a working template (`FlyteLabApp.fork_runs` off, or the template
failed: it is said once in the server's log, and the next launch gets a new template) it starts as a new
interpreter, `python -m flyte_lab.server.launcher`. Either way it runs `main()` below on the same descriptors.

Protocol: the server writes one JSON request on stdin; the child answers one JSON line on stdout
(`{"run_id"}` as soon as the run is recorded, or `{"error": {...}}` if it was refused), then detaches
its stdout and drives the run to its end. Its log (stderr) goes to a file the server chose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from flyte_lab.errors import FlyteLabError, from_wire, to_wire
from flyte_lab.server.errors import LaunchFailed
from flyte_lab.server.forked_launches import ForkedRun, LaunchTemplate, LaunchTemplateError, fingerprint, what_changed

ANSWER_TIMEOUT_S = 120.0
MAX_TEMPLATE_FAILURES = 3  # in a row: a template that cannot work here is not restarted for every launch


class SpawnedRun:
    """A run started as a new interpreter (our child)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid

    def running(self) -> bool:
        return self.proc.returncode is None

    async def wait(self) -> None:
        await self.proc.wait()

    def detach(self) -> None:
        """Nothing to let go of: asyncio's child watcher reaps it whenever it ends."""


RunProcess = SpawnedRun | ForkedRun


class Launcher:
    """Starts runs' processes and watches them; one per server extension, with at most one launch template."""

    def __init__(self, log: logging.Logger | None = None, fork_runs: bool = True) -> None:
        self.children: set[RunProcess] = set()
        self._reapers: set[asyncio.Task[None]] = set()
        self.log = log or logging.getLogger("flyte_lab.server")
        self.fork_runs = fork_runs
        self.template: LaunchTemplate | None = None
        self._failures = 0
        self._closed = False  # the server stopped: no new template, even for a launch still under way
        self._lock = asyncio.Lock()  # one launch at a time talks to the template

    def warm_up(self) -> None:
        """Start a template in the background if none runs (cheap when one does); the server calls it on
        every API request, so the template is ready well before the sidebar's first Run."""
        while self.fork_runs and not self._closed and self.template is None and self._failures < MAX_TEMPLATE_FAILURES:
            try:
                self.template = LaunchTemplate()
            except LaunchTemplateError as exc:
                self._failed(exc)

    def _failed(self, exc: LaunchTemplateError) -> None:
        self._failures += 1
        then = ("the next launch starts a new template" if self._failures < MAX_TEMPLATE_FAILURES else
                f"no new template is started ({self._failures} failures in a row)")
        self.log.warning("flyte_lab: the run launch template failed: %s; runs start as new processes until one "
                         "works: %s", exc, then)
        self._retire()

    def _retire(self) -> None:
        if self.template is not None:
            self.template.close()
            self.template = None

    async def start(self, request: dict[str, Any]) -> str:
        """Start a run's process for `request`; the run id once it is recorded, or the error it was refused with."""
        from flyte_lab.engine.api import flyte_home

        logs = flyte_home() / "lab-logs"
        logs.mkdir(mode=0o700, exist_ok=True)
        log_path = logs / f"launch-{os.getpid()}-{len(self.children)}-{os.urandom(4).hex()}.log"
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            started = await _with_pipes(self._forked, log_fd) or await _with_pipes(self._spawned, log_fd)
        finally:
            os.close(log_fd)  # the child has its own copy
        assert started is not None  # a spawn starts a process or raises
        run, stdin_w, stdout_r = started
        self.children.add(run)
        reaper = asyncio.ensure_future(self._reap(run))
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)
        line = await _exchange(json.dumps(request).encode() + b"\n", stdin_w, stdout_r)
        if not line:
            await run.wait()
            raise LaunchFailed(f"the run's process ended before recording the run; its log: {log_path}")
        answer = json.loads(line)
        if "error" in answer:
            raise from_wire(answer["error"])
        return str(answer["run_id"])

    async def _forked(self, fds: list[int]) -> ForkedRun | None:
        """The run forked from the template, or None when there is no working template (said in the log)."""
        if not self.fork_runs:
            return None
        async with self._lock:
            now = await asyncio.get_running_loop().run_in_executor(None, fingerprint)  # stats files: not on the loop
            if self.template is not None and self.template.fingerprint != now:
                self.log.info("flyte_lab: %s changed since the run launch template started; starting a new one",
                              what_changed(self.template.fingerprint, now))
                self._retire()
            self.warm_up()
            template = self.template
            if template is None:
                return None
            try:
                pid = await asyncio.get_running_loop().run_in_executor(None, template.launch, fds)
            except LaunchTemplateError as exc:
                self._failed(exc)
                self.warm_up()  # for the next launch, starting now
                return None
            self._failures = 0
        return ForkedRun(pid)

    async def _spawned(self, fds: list[int]) -> SpawnedRun:
        stdin, stdout, log = fds
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "flyte_lab.server.launcher", stdin=stdin, stdout=stdout, stderr=log,
            start_new_session=True,  # Ctrl-C of `jupyter lab` does not reach the run
        )
        return SpawnedRun(proc)

    async def _reap(self, run: RunProcess) -> None:
        await run.wait()
        self.children.discard(run)

    async def wait_all(self) -> None:
        """Wait for every child to end (tests; the server never does: runs outlive it)."""
        while self.children:
            await asyncio.gather(*(p.wait() for p in list(self.children)))
            await asyncio.sleep(0)

    def close(self) -> None:
        """The server stops: end the template and forget the runs (they outlive the server on purpose)."""
        self._closed = True
        self._retire()
        for reaper in self._reapers:
            reaper.cancel()
        for run in self.children:
            run.detach()
        self.children.clear()


async def _with_pipes(start: Callable[[list[int]], Awaitable[RunProcess | None]],
                      log_fd: int) -> tuple[RunProcess, int, int] | None:
    """`start` given new pipes as the run's stdin and stdout and `log_fd` as its stderr: the run, with our ends of
    the pipes; None, our ends closed, if it started nothing (a fork that failed late may hold the other ends: a
    spawn after it gets pipes of its own)."""
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    run: RunProcess | None = None
    try:
        run = await start([stdin_r, stdout_w, log_fd])
    finally:
        os.close(stdin_r)  # the child has its own copies
        os.close(stdout_w)
        if run is None:
            os.close(stdin_w)
            os.close(stdout_r)
    return None if run is None else (run, stdin_w, stdout_r)


async def _exchange(request: bytes, stdin: int, stdout: int) -> bytes:
    """Write the request to the child's stdin, then read its one answer line (b"" if it ended first)."""
    loop = asyncio.get_running_loop()
    writer, _ = await loop.connect_write_pipe(asyncio.Protocol, open(stdin, "wb", buffering=0))
    writer.write(request)
    writer.close()  # once written: the child reads to the newline
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                open(stdout, "rb", buffering=0))
    try:
        return await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT_S)
    finally:
        transport.close()


def _answer(data: dict[str, Any], out: Any) -> None:
    """Send the one answer line, then point fd 1 at /dev/null: the server may be gone later."""
    out.write(json.dumps(data) + "\n")
    out.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def main() -> int:
    from flyte_lab.private_process import hide_memory

    hide_memory()  # started with the Jupyter server's environment, the source of the runs' secrets
    from flyte_lab.engine.api import resume_run, run_notebook

    out = os.fdopen(os.dup(1), "w")
    request = json.loads(sys.stdin.readline())
    answered = False

    def created(run_id: str) -> None:
        nonlocal answered
        if not answered:
            answered = True
            _answer({"run_id": run_id}, out)

    try:
        if request["action"] == "run":
            run_notebook(request["path"], request.get("params") or {}, cluster=request.get("cluster") or "shared",
                         workers=request.get("workers"), use_cache=not request.get("no_cache"),
                         on_created=created)
        else:
            run_id = request["run_id"]
            # resume_run claims the run (refusing a live driver) before it reports anything
            resume_run(run_id, cluster=request.get("cluster"), on_change=lambda _p: created(run_id),
                       on_event=lambda _line: created(run_id))
    except BaseException as exc:
        if not answered:
            _answer({"error": to_wire(exc)}, out)
            return 2
        if not isinstance(exc, FlyteLabError | KeyboardInterrupt):
            raise
        return 1
    finally:
        with contextlib.suppress(OSError):
            out.close()
    return 0


if __name__ == "__main__":
    from flyte_lab.import_costs import decline_unused_imports
    from flyte_lab.process_exit import exit_process

    decline_unused_imports()  # as the launch template does: the same run, however it started
    exit_process(main())
