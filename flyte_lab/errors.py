"""The one exception tree of flyte_lab.

Every error a user can cause is a `FlyteLabError`; the CLI turns it into one
line and `exit_code`, the REST API into `http_status` and a JSON message (user
errors are 4xx, never 500). Subclasses carry the data their message names, and
are picklable (they cross Dask) because `__reduce__` rebuilds them from that data.
The run store's errors live here too: one tree, one place to look.
"""

from __future__ import annotations

from typing import Any


class FlyteLabError(Exception):
    """Base of every flyte_lab error; `exit_code` is what the CLI returns, `http_status` what the REST API answers."""

    exit_code = 2
    http_status = 500  # not the user's doing unless a subclass says so

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.data))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[FlyteLabError], message: str, data: dict[str, Any]) -> FlyteLabError:
    err = cls.__new__(cls)
    FlyteLabError.__init__(err, message, **data)
    return err


class UserInputError(FlyteLabError):
    """Bad arguments, bad files, bad parameters: refused before anything runs."""

    http_status = 400


class NotebookReadError(UserInputError):
    """The file is not a notebook nbformat can read (`bad-notebook`)."""


class HeaderError(UserInputError):
    """A `%%flyte_task` header that does not parse (`bad-header`)."""

    def __init__(self, message: str, *, line: int = 1, **data: Any) -> None:
        super().__init__(message, line=line, **data)
        self.line = line


class ValidationFailed(UserInputError):
    """The notebook has error diagnostics; `diagnostics` lists them all."""

    def __init__(self, message: str, *, diagnostics: list[Any] | None = None, **data: Any) -> None:
        super().__init__(message, diagnostics=diagnostics or [], **data)
        self.diagnostics = diagnostics or []


class ParameterError(UserInputError):
    """A `-p NAME=VALUE` that names no workflow input or does not parse as its type."""


class SelectionRefused(UserInputError):
    """A partial run (`--only`/`--from`/`--to`/`--reuse`) that cannot start: an unknown task, an empty or
    contradictory selection, or an unselected producer whose outputs no earlier run can give."""


class RunNotFound(UserInputError):
    """No run with that id in the store (or no store at all yet)."""

    http_status = 404


class TaskTypeError(FlyteLabError):
    """A value at run time does not match its declared type."""

    exit_code = 1


class ArtifactError(FlyteLabError):
    """An artifact cannot be written, read or trusted (bad key, bad signature)."""

    exit_code = 1


class RunFailed(FlyteLabError):
    """A run ended with a failed task (after its retries)."""

    exit_code = 1


class RunBusy(UserInputError):
    """Another live driver holds the run's lease (e.g. `resume` of a run still running)."""

    http_status = 409


class LeaseLostError(FlyteLabError):
    """This driver's lease on a run was taken over: its writes are refused (fencing)."""

    exit_code = 1


class DriverError(FlyteLabError):
    """The driver hit an unexpected error; the run was recorded `failed` with it."""

    exit_code = 1


class ClusterLost(DriverError):
    """The cluster's scheduler went away mid-run (e.g. the shared executor was killed); the run was recorded
    `failed`, and resume reruns what did not finish."""


class LaunchFailed(FlyteLabError):
    """A run's own process ended without saying what became of the run (its log names why)."""

    exit_code = 1


class ExecutedNotebookNotFound(UserInputError):
    """A task's executed notebook that does not exist: no such task, no attempt yet, or its file is gone."""

    http_status = 404


# -- the run store's -------------------------------------------------------------------------------------


class TaskNotFound(UserInputError):
    """A URL (or command) names a task the run does not have."""

    http_status = 404


class NoStore(UserInputError):
    """There is no run store yet (read-only commands create none)."""

    http_status = 404


class StoreTooNew(UserInputError):
    """The store's schema revision is none this version knows: a newer flyte_lab wrote it."""


class ScheduledRunExists(FlyteLabError):
    """A run for this (schedule, fire time) is already in the store."""

    http_status = 409

    def __init__(self, message: str, *, run_id: str, **data: Any) -> None:
        super().__init__(message, run_id=run_id, **data)
        self.run_id = run_id


class ScheduleNotFound(UserInputError):
    """No schedule with that name."""

    http_status = 404


class ScheduleExists(UserInputError):
    """A schedule with that name is already in the store."""

    http_status = 409


# -- across a process boundary (a launched run answering its launcher) ---------------------------------------


def to_wire(exc: BaseException) -> dict[str, Any]:
    """The one shape an error crosses a process boundary in: class name, message, exit code, HTTP status, and
    the diagnostics of a refused notebook. Anything not a `FlyteLabError` is a failure of ours: exit 1, 500."""
    if isinstance(exc, FlyteLabError):
        data = {k: v for k, v in exc.data.items() if k == "diagnostics"}
        return {"type": type(exc).__name__, "message": exc.message, "exit_code": exc.exit_code,
                "http_status": exc.http_status, "data": data}
    return {"type": type(exc).__name__, "message": f"{type(exc).__name__}: {exc}", "exit_code": 1,
            "http_status": 500, "data": {}}


def from_wire(wire: dict[str, Any]) -> FlyteLabError:
    """The error `to_wire` sent, rebuilt: its own class where this process knows it, else a `FlyteLabError`;
    either way with the exit code and HTTP status it was sent with."""
    name = str(wire.get("type"))
    cls = next((c for c in _subclasses(FlyteLabError) if c.__name__ == name), FlyteLabError)
    raw = wire.get("data")
    err = _rebuild(cls, str(wire.get("message") or "the launch failed"), raw if isinstance(raw, dict) else {})
    err.exit_code = int(wire.get("exit_code") or 1)
    err.http_status = int(wire.get("http_status") or 500)
    return err


def _subclasses(cls: type[FlyteLabError]) -> list[type[FlyteLabError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _subclasses(sub)
    return found
