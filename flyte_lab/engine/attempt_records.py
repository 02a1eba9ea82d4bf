"""What an attempt ended with, as typed records: the one place an error record is built.

A worker returns an `AttemptResult` to the driver through Dask (frozen dataclasses of stdlib values:
they pickle with nothing but flyte_lab importable), the driver and the state machine pass it on, and
the store gets `ErrorRecord.to_dict()`: the `error` object of DESIGN.md (`show --json`, the store's
JSON columns), whose shape depends on the error's source and stays exactly what it always was:

- an attempt's error names its place: `{"type", "message", "cell", "line", "traceback"}`
  (`cell`/`line` null when no cell is at fault, e.g. a dead kernel);
- the run's own error names none: `{"type", "message"}`, plus `"traceback"` for a driver failure.

Modelled on papermill's `PapermillExecutionError` (ename, evalue, traceback, the cell) and distributed's
`ExecuteSuccessEvent` / `ExecuteFailureEvent` (one class per outcome).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from flyte_lab.statuses import CancelSource

# who is at fault decides the retry budget: a user's error (or its timeout) is retried only with
# `--retries`; an infrastructure error (or a kill nobody asked for) always, up to the run's infra retries
FailureKind = Literal["user", "infra", "timeout", "cancelled", "oom"]


@dataclass(frozen=True)
class ErrorRecord:
    """One error as stored and shown. Build it with the constructor for its source."""

    type: str
    message: str
    cell: int | None = None
    line: int | None = None
    traceback: str | None = ""  # None: not part of the record (a run's own error)
    located: bool = True  # False: the run's own error, stored without `cell` and `line`

    def to_dict(self) -> dict[str, Any]:
        """The stored (and served) shape: DESIGN.md's `error` object."""
        out: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.located:
            out.update(cell=self.cell, line=self.line)
        if self.traceback is not None:
            out["traceback"] = self.traceback
        return out

    # -- an attempt's errors -------------------------------------------------------------------------------
    @classmethod
    def from_cell_error(cls, ename: str, evalue: str, *, cell: int, line: int, traceback: str) -> ErrorRecord:
        """A cell of the task raised (papermill's `PapermillExecutionError`), located in the user's cell."""
        return cls(ename, evalue, cell, line, traceback)

    @classmethod
    def refused(cls, type_: str, message: str, *, cell: int, line: int | None = None) -> ErrorRecord:
        """The task cannot start as declared (its kernelspec is missing, no worker can hold it): the user's."""
        return cls(type_, message, cell, line)

    @classmethod
    def infrastructure(cls, type_: str, message: str, *, cell: int | None = None,
                       line: int | None = None) -> ErrorRecord:
        """The kernel, a worker, Dask, the cluster or the driver failed under the task: not the user's code."""
        return cls(type_, message, cell, line)

    @classmethod
    def worker_lost(cls, task: str, worker: str | None) -> ErrorRecord:
        """Dask reran the attempt on `worker` after the one running it was lost."""
        return cls.infrastructure("WorkerLost", f"the worker running task `{task}` was lost; Dask reran it on {worker}")

    @classmethod
    def driver_lost(cls) -> ErrorRecord:
        """A resumed run finds an attempt its dead driver left running."""
        return cls.infrastructure("DriverLost", "the driver of this run stopped during this attempt")

    @classmethod
    def cancelled(cls, message: str, *, cell: int | None = None) -> ErrorRecord:
        """The attempt was stopped: by a cancel that reached its worker (`cell` set), or Dask cancelled it."""
        return cls("Cancelled", message, cell, None)

    @classmethod
    def out_of_memory(cls, task: str, peak_bytes: int, limit_bytes: float, *, cell: int) -> ErrorRecord:
        """The kernel's memory (RSS of its process tree) passed the task's `--mem` and it was killed."""
        return cls("TaskOutOfMemory", f"task `{task}` used {_mib(peak_bytes)} of memory, over its --mem of "
                   f"{_mib(limit_bytes)}; its kernel was killed (raise --mem, or use less)", cell, 1)

    @classmethod
    def pod_out_of_memory(cls, task: str, limit_bytes: float | None, worker: str | None, *,
                          cell: int) -> ErrorRecord:
        """The k8s pod of the worker running the task was OOMKilled: over its memory limit (the task's `--mem`)."""
        over = f", over its --mem of {_mib(limit_bytes)} (the pod's memory limit)" if limit_bytes else ""
        pod = f"its worker pod {worker}" if worker else "its worker pod"
        return cls("TaskOutOfMemory", f"task `{task}` ran out of memory: {pod} was OOMKilled{over} (raise --mem, "
                   "or use less)", cell, 1)

    @classmethod
    def timeout(cls, task: str, timeout_s: float, *, cell: int) -> ErrorRecord:
        """The attempt spent its `--timeout` (kernel start to outputs saved) and its kernel was killed."""
        return cls("TaskTimeout", f"task `{task}` ran longer than its --timeout of {timeout_s:g}s (kernel start to "
                   "outputs saved); its kernel was killed", cell, 1)

    # -- the run's own errors ------------------------------------------------------------------------------
    @classmethod
    def run_cancelled(cls, by: CancelSource) -> ErrorRecord:
        """The run was cancelled: recorded on the tasks and attempts it stopped, saying who cancelled. Nobody's
        error and no place in the code: no cell, line or traceback (a debugger has nothing to show)."""
        return cls("Cancelled", by.phrase, traceback=None, located=False)

    @classmethod
    def driver_failed(cls, description: str, traceback: str) -> ErrorRecord:
        """The driver itself hit an unexpected error (DESIGN.md: `error.type` `DriverError`)."""
        return cls("DriverError", f"the driver failed: {description}", traceback=traceback, located=False)

    @classmethod
    def not_started(cls, type_: str, message: str) -> ErrorRecord:
        """The run's cluster never came up (a bad address, Ctrl-C while it started): nothing ran."""
        return cls(type_, message, traceback=None, located=False)


@dataclass(frozen=True, kw_only=True)
class AttemptSucceeded:
    """The attempt ran to its end and stored its outputs (artifact entries by output name)."""

    outputs: dict[str, dict[str, Any]]
    output_notebook: str | None = None  # the executed notebook's URL
    kernel_note: str | None = None  # how the kernel was started, when that is worth a note on the run
    worker: str | None = None
    started: float | None = None  # when the worker began it (epoch seconds, the worker's clock)
    usage: dict[str, float] | None = None  # what its kernel used: `peak_rss_bytes`, `cpu_s` (worker/usage.py)


@dataclass(frozen=True, kw_only=True)
class AttemptFailed:
    """The attempt failed; `kind` says who is at fault."""

    kind: FailureKind
    error: ErrorRecord
    output_notebook: str | None = None  # the executed notebook as far as it ran, if any
    kernel_note: str | None = None
    worker: str | None = None
    started: float | None = None
    usage: dict[str, float] | None = None

    @property
    def fault(self) -> Literal["user", "infra"]:
        """Who is at fault, as the store records it: a timeout or a memory limit passed is the task's own (its
        --retries cover it), a kill nobody asked for the infrastructure's."""
        return "infra" if self.kind in ("infra", "cancelled") else "user"


AttemptResult: TypeAlias = AttemptSucceeded | AttemptFailed


def _mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"
