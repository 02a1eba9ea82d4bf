"""The task cache: outputs reusable across runs, and who is computing a key now.

A mixin of `RunStore`, kept apart because it is keyed by cache key, not by run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from flyte_lab.store.database import upsert
from flyte_lab.store.rows import dumps, iso, loads, now_utc
from flyte_lab.store.schema import CacheEntry, CacheLock
from flyte_lab.store.store_part import StorePart


class CacheMixin(StorePart):
    """`cache_get/put` and `cache_lock/unlock`; `RunStore` provides the transactions."""

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
        with self._write() as conn:
            self.cache_put_in(conn, cache_key, task, outputs, run_id)

    def cache_put_in(self, conn: Connection, cache_key: str, task: str, outputs: dict[str, Any],
                     run_id: str | None) -> None:
        row = {"cache_key": cache_key, "task": task, "outputs_json": dumps(outputs), "created_at": now_utc(),
               "run_id": run_id}
        upsert(conn, CacheEntry, [row], ["cache_key"])

    def cache_claim(self, cache_key: str, owner: str, task: str, ttl_s: float, *,
                    ignore_entry: bool = False) -> tuple[str, Any]:
        """Look the key up and, on a miss, take its lock: one write transaction, so no run can take
        the lock after the holder committed its entry without seeing that entry.

        Returns ("hit", entry), ("locked", None) when `owner` holds the lock now (also when its
        previous holder's lease lapsed), or ("busy", holder). `ignore_entry` skips the lookup (an
        entry whose artifacts are gone is recomputed).
        """
        with self._write() as conn:
            if not ignore_entry:
                row = conn.execute(select(CacheEntry).where(CacheEntry.cache_key == cache_key)).first()
                if row is not None:
                    return "hit", {"cache_key": row.cache_key, "task": row.task, "outputs": loads(row.outputs_json),
                                   "run_id": row.run_id, "created_at": iso(row.created_at)}
            now = now_utc()
            expires = now + timedelta(seconds=ttl_s)
            lock = conn.execute(select(CacheLock).where(CacheLock.cache_key == cache_key)).first()
            if lock is None:
                conn.execute(insert(CacheLock).values(cache_key=cache_key, owner=owner, task=task,
                                                      expires_at=expires))
                return "locked", None
            if lock.owner == owner or lock.expires_at < now:
                conn.execute(update(CacheLock).where(CacheLock.cache_key == cache_key).values(
                    owner=owner, task=task, expires_at=expires))
                return "locked", None
            return "busy", lock.owner

    def cache_renew(self, cache_keys: list[str], owner: str, ttl_s: float) -> list[str]:
        """Extend `owner`'s leases on these keys; returns the keys it no longer holds."""
        if not cache_keys:
            return []
        with self._write() as conn:
            conn.execute(update(CacheLock).where(CacheLock.cache_key.in_(cache_keys), CacheLock.owner == owner)
                         .values(expires_at=now_utc() + timedelta(seconds=ttl_s)))
            held = set(conn.scalars(select(CacheLock.cache_key).where(
                CacheLock.cache_key.in_(cache_keys), CacheLock.owner == owner)))
        return [key for key in cache_keys if key not in held]

    def cache_lock(self, cache_key: str, owner: str, ttl_s: float) -> bool:
        """Try to become the one computing `cache_key` (no lookup); True if `owner` holds it now."""
        state, _ = self.cache_claim(cache_key, owner, "", ttl_s, ignore_entry=True)
        return state == "locked"

    def cache_unlock(self, cache_key: str, owner: str) -> None:
        """Release `cache_key` if `owner` holds it (a no-op otherwise)."""
        with self._write() as conn:
            self.cache_unlock_in(conn, cache_key, owner)

    def cache_unlock_in(self, conn: Connection, cache_key: str, owner: str) -> None:
        conn.execute(delete(CacheLock).where(CacheLock.cache_key == cache_key, CacheLock.owner == owner))
