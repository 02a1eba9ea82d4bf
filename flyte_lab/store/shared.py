"""The run store of a long-lived server process (the dashboard, the Jupyter server extension): opened once per
store location (FLYTE_LAB_HOME, FLYTE_LAB_DB_URL) and kept, so a request or a page refresh opens nothing.

Only a store that opened is kept: one that does not exist yet is looked for again at the next call. The pool
serves the server's threads (SQLite connections are made with `check_same_thread=False`).
"""

from __future__ import annotations

import os
import threading

from flyte_lab.store.run_store import RunStore

_lock = threading.Lock()
_stores: dict[tuple[str, str], RunStore] = {}


def _key() -> tuple[str, str]:
    return os.environ.get("FLYTE_LAB_HOME", ""), os.environ.get("FLYTE_LAB_DB_URL", "")


def shared_store(create: bool = False) -> RunStore:
    """This process's `RunStore` for the environment's store; `NoStore` (nothing created) unless `create`."""
    key = _key()
    with _lock:
        if key not in _stores:
            _stores[key] = RunStore.from_env(create=create)
        return _stores[key]


def close_shared_stores() -> None:
    """Dispose every pooled connection (the server stops, or a test ends)."""
    with _lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
