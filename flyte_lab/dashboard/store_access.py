"""Open the run store for reading, once per server process, and say plainly why it cannot be opened."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from flyte_lab.errors import FlyteLabError

_lock = threading.Lock()
_stores: dict[tuple[str, str], Any] = {}


@dataclass(frozen=True)
class StoreProblem:
    """Why there is nothing to show: `kind` is "empty" (no store yet), "newer" (schema) or "error"."""

    kind: str
    message: str


def _key() -> tuple[str, str]:
    return os.environ.get("FLYTE_LAB_HOME", ""), os.environ.get("FLYTE_LAB_DB_URL", "")


def open_store() -> Any:
    """The shared read-only `RunStore` of this environment, or a `StoreProblem` (never raises).

    Only a store that opened is kept: one that does not exist yet is looked for again on the next page load.
    """
    from flyte_lab.errors import NoStore, StoreTooNew
    from flyte_lab.store import RunStore

    key = _key()
    with _lock:
        if key in _stores:
            return _stores[key]
        try:
            store = RunStore.from_env(create=False)
        except NoStore as exc:
            return StoreProblem("empty", f"No runs yet ({exc.message}). Start one with `flyte-lab run NOTEBOOK` "
                                         "and it appears here.")
        except StoreTooNew as exc:
            return StoreProblem("newer", f"{exc.message[0].upper()}{exc.message[1:]}.")
        except FlyteLabError as exc:
            return StoreProblem("error", exc.message)
        _stores[key] = store
        return store


def close_stores() -> None:
    """Dispose every pooled connection (the server stops, or a test ends)."""
    with _lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
