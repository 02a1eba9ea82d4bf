"""Runs launched from Jupyter: each in its own process (`flyte_lab/run_launch.py`: why, and the protocol).

How it starts: forked from the launch template (`server/launch_template.py`, a process that imported the engine
once; the server's side is `server/forked_launches.py`), which saves the ~1.5 s of imports a new interpreter
spends before the run is even recorded. Without a working template (`FlyteLabApp.fork_runs` off, or the template
failed: it is said once in the server's log, and the next launch gets a new template) it starts as a new
interpreter, `python -m flyte_lab.run_launch`. Either way it runs `run_launch.main()` on the same descriptors:
one request on stdin, one answer line on stdout, its log (stderr) a file the server chose; a refusal is raised
here as the error it was (`errors.from_wire`), so it is answered with its own HTTP status.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from flyte_lab import run_launch
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
        log_fd, log_path = run_launch.new_log("launch")
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
        line = await _exchange(run_launch.request_line(request), stdin_w, stdout_r)
        if not line:
            await run.wait()  # ended: its log is complete
        return run_launch.answered(line, log_path)

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
            *run_launch.command(), stdin=stdin, stdout=stdout, stderr=log,
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
