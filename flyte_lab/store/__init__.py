"""The durable run store (SQLite in WAL mode, or any SQLAlchemy URL such as PostgreSQL)."""

from __future__ import annotations

from flyte_lab.store.run_store import RunStore, new_run_id

__all__ = ["RunStore", "new_run_id"]
