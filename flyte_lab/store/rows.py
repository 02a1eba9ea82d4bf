"""Converting between Python values and run-store rows: times, JSON, ids.

The columns hold naive UTC datetimes and JSON text (see `schema.py`); these
helpers are the one place that encodes and decodes them.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any


def now_utc() -> datetime:
    # naive UTC: what the DateTime columns hold on every dialect
    return datetime.now(UTC).replace(tzinfo=None)


def to_db_time(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=UTC).isoformat()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def new_run_id() -> str:
    """A run id that sorts by creation time: `20250101-120000-1a2b3c`."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


