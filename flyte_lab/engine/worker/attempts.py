"""Live task attempts in this worker process: their kernels, the timeout watchdog and cancel.

A threaded local cluster runs several Dask workers in one process, so the
registry is shared and guarded by one lock. An attempt's budget (`--timeout`)
runs from its kernel's start to its outputs being saved: a watchdog timer
kills the kernel's process group when it is spent, and `cancel_attempts`
(called by the driver on every worker through `client.run`) kills the kernels
of the attempts it names and refuses to start a kernel for them later.

A kill also wakes the attempt's papermill at once: nbclient looks for a dead
kernel only once a second, and until it notices, the worker thread (and a
driver closing its local cluster) waits. Cancelling the tasks of the
attempt's own event loop is nbclient's own "the kernel died" signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from flyte_lab.engine.worker.usage import Usage, UsageSampler

_CANCEL_MEMORY = 4096  # cancelled keys remembered for attempts that have not started here yet

_lock = threading.Lock()
_live: dict[str, Attempt] = {}
_cancelled: OrderedDict[str, None] = OrderedDict()


class AttemptStopped(Exception):
    """The attempt was cancelled before its kernel started."""

if TYPE_CHECKING:
    from flyte_lab.engine.worker.forked_kernels import KernelProcess


class Attempt:
    """One running attempt: its kernel (once started) and why it was stopped, if it was."""

    def __init__(self, key: str, timeout_s: float | None, mem_limit_bytes: float | None = None) -> None:
        self.key = key
        self.timeout_s = timeout_s
        self.mem_limit_bytes = mem_limit_bytes
        self.stopped_by: str | None = None  # "timeout", "cancelled" or "oom"
        self.usage: Usage | None = None  # what the kernel used, once the attempt finished
        self.oom_peak_bytes = 0
        self._sampler: UsageSampler | None = None
        self.pid: int | None = None
        self.pgid: int | None = None
        self.proc: KernelProcess | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop papermill runs this attempt on
        self._timer: threading.Timer | None = None
        self._done = False

    def kernel_started(self, proc: KernelProcess | None, pid: int) -> None:
        """Called by the kernel manager as soon as the kernel process exists: starts the budget."""
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            pgid = None
        with _lock:
            self.proc, self.pid, self.pgid = proc, pid, pgid
            if self._done or self.stopped_by is not None:
                self._kill_locked()
                raise AttemptStopped(self.key)
            if self._sampler is not None:  # its first kernel died starting (`papermill_engine.START_TRIES`)
                self._sampler.stop()
            self._sampler = UsageSampler(pid, self.mem_limit_bytes, self._out_of_memory)
            if self.timeout_s is not None and self._timer is None:  # one budget for the attempt, not per kernel
                self._start_timer_locked()

    def restart_clock(self) -> None:
        """A batch's next map-over element begins: the `--timeout` budget is each element's, so it starts again."""
        with _lock:
            if self._timer is None or self._done or self.stopped_by is not None:
                return
            self._timer.cancel()
            self._start_timer_locked()

    def _start_timer_locked(self) -> None:
        assert self.timeout_s is not None
        self._timer = threading.Timer(self.timeout_s, self._expire)
        self._timer.name = f"flyte-lab-timeout-{self.key}"
        self._timer.daemon = True
        self._timer.start()

    def running_on(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Papermill runs this attempt on `loop` (None: no longer; the caller closes it only after this)."""
        with _lock:
            self._loop = loop

    def _expire(self) -> None:
        self.stop("timeout")

    def _out_of_memory(self, rss: int) -> None:
        self.oom_peak_bytes = rss
        self.stop("oom")

    def stop(self, why: str) -> None:
        with _lock:
            if self._done or self.stopped_by is not None:
                return
            self.stopped_by = why
            self._kill_locked()
            self._wake_locked()

    def _wake_locked(self) -> None:
        # only once its kernel runs: a kernel still starting is stopped by `kernel_started`, and interrupting
        # its start could leave its process unknown to this attempt
        if self._loop is not None and self.pid is not None:
            with contextlib.suppress(RuntimeError):  # closed meanwhile: papermill has returned already
                self._loop.call_soon_threadsafe(_cancel_all, self._loop)

    def _kill_locked(self) -> None:
        if self.pgid is not None and self.pgid != os.getpgid(0):  # never our own group
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        elif self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def finish(self) -> None:
        """The attempt is over: stop the watchdog, make sure its kernel is gone and reaped."""
        sampler = self._sampler
        if sampler is not None:  # its last sample while the kernel may still be there
            self.usage = sampler.stop()
        with _lock:
            self._done = True
            if self._timer is not None:
                self._timer.cancel()
            if _live.get(self.key) is self:
                del _live[self.key]
            _cancelled.pop(self.key, None)
            self._kill_locked()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """On the attempt's loop: what nbclient waits on (the reply, the next poll) ends now; it raises
    `DeadKernelError`, or `CancelledError` when papermill was between two awaits."""
    for task in asyncio.all_tasks(loop):
        task.cancel()


def begin(key: str, timeout_s: float | None, mem_limit_bytes: float | None = None) -> Attempt:
    """Register an attempt; raises `AttemptStopped` if it was cancelled before it got here."""
    attempt = Attempt(key, timeout_s, mem_limit_bytes)
    with _lock:
        if key in _cancelled:
            attempt.stopped_by = "cancelled"
            attempt._done = True
            del _cancelled[key]
            raise AttemptStopped(key)
        _live[key] = attempt
    return attempt


def current(key: str | None) -> Attempt | None:
    if key is None:
        return None
    with _lock:
        return _live.get(key)


def cancel_attempts(keys: list[str], dask_worker: Any = None) -> list[str]:
    """Kill the kernels of this process's attempts named by `keys`; keep the others from starting.

    Returns the keys that were running here. Meant for `client.run(cancel_attempts, keys)`.
    """
    stopped = []
    with _lock:
        targets = []
        for key in keys:
            attempt = _live.get(key)
            if attempt is None:
                _cancelled[key] = None
                _cancelled.move_to_end(key)
            else:
                targets.append(attempt)
        while len(_cancelled) > _CANCEL_MEMORY:
            _cancelled.popitem(last=False)
    for attempt in targets:
        attempt.stop("cancelled")
        stopped.append(attempt.key)
    return stopped
