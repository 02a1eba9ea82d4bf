"""The one table from flyte_lab errors to HTTP statuses: user errors are 4xx with a JSON message, never 500."""

from __future__ import annotations

from typing import Any

import pydantic

from flyte_lab import errors
from flyte_lab.server.paths import PathOutsideRoot
from flyte_lab.store.database import NoStore
from flyte_lab.store.run_store import ScheduledRunExists
from flyte_lab.store.schedules import ScheduleExists, ScheduleNotFound


class BadRequest(errors.UserInputError):
    """A body that is not JSON, or a missing query argument."""


class LaunchFailed(errors.FlyteLabError):
    """The launcher process ended without starting the run (its log names why)."""

    exit_code = 1


# first match wins: specific classes before their bases
STATUS_TABLE: list[tuple[type[BaseException], int]] = [
    (PathOutsideRoot, 404),
    (errors.RunNotFound, 404),
    (ScheduleNotFound, 404),
    (NoStore, 404),
    (errors.RunBusy, 409),
    (ScheduleExists, 409),
    (ScheduledRunExists, 409),
    (errors.ValidationFailed, 400),
    (errors.ParameterError, 400),
    (errors.NotebookReadError, 400),
    (errors.HeaderError, 400),
    (pydantic.ValidationError, 400),
    (errors.UserInputError, 400),
    (errors.FlyteLabError, 500),
]

_BY_NAME = {cls.__name__: cls for cls, _ in STATUS_TABLE}


def status_for(exc: BaseException) -> int:
    for cls, status in STATUS_TABLE:
        if isinstance(exc, cls):
            return status
    return 500


def body_for(exc: BaseException) -> dict[str, Any]:
    """`{"message", "diagnostics"?}`, the one error shape of the API."""
    if isinstance(exc, pydantic.ValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        return {"message": f"invalid request: {problems}"}
    if isinstance(exc, errors.FlyteLabError):
        body: dict[str, Any] = {"message": exc.message}
        diagnostics = exc.data.get("diagnostics")
        if diagnostics:
            body["diagnostics"] = diagnostics
        return body
    return {"message": f"internal error: {type(exc).__name__}: {exc}"}


def from_wire(data: dict[str, Any]) -> errors.FlyteLabError:
    """An error the launcher process reported (`{"type", "message", "data"}`), rebuilt for the table."""
    cls = _BY_NAME.get(str(data.get("type")))
    message = str(data.get("message") or "the launch failed")
    raw = data.get("data")
    extra: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if cls is None or not issubclass(cls, errors.FlyteLabError):
        cls = errors.UserInputError if data.get("exit_code") == 2 else LaunchFailed
    err = cls.__new__(cls)
    errors.FlyteLabError.__init__(err, message, **extra)
    return err
