"""flyte_lab errors as HTTP answers: each error's own `http_status` (user errors 4xx), a JSON message, never a
traceback. The one table is the error classes themselves (`flyte_lab/errors.py`); here only what is not ours."""

from __future__ import annotations

from typing import Any

import pydantic

from flyte_lab import errors


class BadRequest(errors.UserInputError):
    """A body that is not JSON, or a missing query argument."""


def status_for(exc: BaseException) -> int:
    if isinstance(exc, errors.FlyteLabError):
        return exc.http_status
    if isinstance(exc, pydantic.ValidationError):  # a request body the models refuse
        return 400
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
