"""The one exception tree of flyte_lab.

Every error a user can cause is a `FlyteLabError`; the CLI turns it into one
line and `exit_code`. Subclasses carry the data their message names, and are
picklable (they cross Dask) because `__reduce__` rebuilds them from that data.
"""

from __future__ import annotations

from typing import Any


class FlyteLabError(Exception):
    """Base of every flyte_lab error; `exit_code` is what the CLI returns."""

    exit_code = 2

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


class RunNotFound(UserInputError):
    """No run with that id in the store."""


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


class LeaseLostError(FlyteLabError):
    """This driver's lease on a run was taken over: its writes are refused (fencing)."""

    exit_code = 1


class DriverError(FlyteLabError):
    """The driver hit an unexpected error; the run was recorded `failed` with it."""

    exit_code = 1


class ClusterLost(DriverError):
    """The cluster's scheduler went away mid-run (e.g. the shared executor was killed); the run was recorded
    `failed`, and resume reruns what did not finish."""
