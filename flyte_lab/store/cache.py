"""The task cache: outputs reusable across runs, and who is computing a key now.

A mixin of `RunStore`, kept apart because it is keyed by cache key, not by run.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, delete, exc, insert, select, update

from flyte_lab.store.rows import dumps, iso, loads, now_utc
from flyte_lab.store.schema import CacheEntry, CacheLock


class CacheMixin:
    """`cache_get/put` and `cache_lock/unlock`; `RunStore` provides the transactions."""

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def cache_get(self, cache_key: str) -> dict[str, Any] | None:
        """`{"cache_key", "task", "outputs", "run_id", "created_at"}`, or None on a miss."""
        with self._read() as conn:
            row = conn.execute(select(CacheEntry).where(CacheEntry.cache_key == cache_key)).first()
        if row is None:
            return None
        return {
            "cache_key": row.cache_key,
            "task": row.task,
            "outputs": loads(row.outputs_json),
            "run_id": row.run_id,
            "created_at": iso(row.created_at),
        }

    def cache_put(self, cache_key: str, task: str, outputs: dict[str, Any], run_id: str | None) -> None:
        """Store a task's outputs under `cache_key` (the latest write wins)."""
        values = {
            "task": task,
            "outputs_json": dumps(outputs),
            "created_at": now_utc(),
            "run_id": run_id,
        }
        with self._write() as conn:
            updated = conn.execute(
                update(CacheEntry).where(CacheEntry.cache_key == cache_key).values(**values)
            )
            if updated.rowcount == 0:
                conn.execute(insert(CacheEntry).values(cache_key=cache_key, **values))

    def cache_lock(self, cache_key: str, owner: str, ttl_s: float) -> bool:
        """Try to become the one computing `cache_key`; True if `owner` holds it now.

        Atomic on any database: the INSERT succeeds for exactly one contender; a
        lock past its `expires_at` (its owner died) is taken over by a guarded
        UPDATE. The holder calling again extends its lease.
        """
        for _ in range(3):
            now = now_utc()
            expires = now + timedelta(seconds=ttl_s)
            try:
                with self._write() as conn:
                    conn.execute(
                        insert(CacheLock).values(cache_key=cache_key, owner=owner, expires_at=expires)
                    )
                return True
            except exc.IntegrityError:
                pass
            with self._write() as conn:
                taken = conn.execute(
                    update(CacheLock)
                    .where(
                        CacheLock.cache_key == cache_key,
                        (CacheLock.owner == owner) | (CacheLock.expires_at < now),
                    )
                    .values(owner=owner, expires_at=expires)
                )
                if taken.rowcount == 1:
                    return True
                held = conn.scalar(select(CacheLock.owner).where(CacheLock.cache_key == cache_key))
            if held is not None:
                return False
            # released between our INSERT and UPDATE: try again
        return False

    def cache_unlock(self, cache_key: str, owner: str) -> None:
        """Release `cache_key` if `owner` holds it (a no-op otherwise)."""
        with self._write() as conn:
            conn.execute(delete(CacheLock).where(CacheLock.cache_key == cache_key, CacheLock.owner == owner))
