"""Worker-group scale events of a run (`--cluster k8s`'s per-profile autoscaler): a mixin of `RunStore`.

The autoscaler runs in the driver's process, so its writes carry the driver's fence like every other write
of run state: a driver whose run was taken over records nothing more.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from flyte_lab.store.rows import iso, now_utc, to_db_time
from flyte_lab.store.schema import ScaleEvent
from flyte_lab.store.store_part import StorePart

SCALE_REASONS = frozenset({"waiting_tasks", "idle_timeout", "min_workers"})


def scale_event_view(row: Any) -> dict[str, Any]:
    """One element of `show --json`'s `scale_events`."""
    return {
        "at": iso(row.at),
        "group": row.group_name,
        "profile": row.profile,
        "from": row.from_replicas,
        "to": row.to_replicas,
        "reason": row.reason,
        "waiting": row.waiting,
    }


def scale_events_of(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(ScaleEvent).where(ScaleEvent.run_id == run_id).order_by(ScaleEvent.id)).all()
    return [scale_event_view(r) for r in rows]


class ScaleEventsMixin(StorePart):
    """`record_scale_event` and `scale_events`; `RunStore` provides the transactions and the fence check."""

    def check_fence(self, conn: Connection, run_id: str, fence: int | None) -> None:
        raise NotImplementedError  # LeaseMixin's, earlier in RunStore's bases

    def record_scale_event(self, run_id: str, *, group: str, profile: str, from_replicas: int, to_replicas: int,
                           reason: str, waiting: int, at: datetime | None = None,
                           fence: int | None = None) -> None:
        if reason not in SCALE_REASONS:
            raise ValueError(f"unknown scale reason {reason!r}")
        with self._write() as conn:
            self.check_fence(conn, run_id, fence)
            conn.execute(insert(ScaleEvent).values(
                run_id=run_id, at=to_db_time(at) or now_utc(), group_name=group, profile=profile,
                from_replicas=from_replicas, to_replicas=to_replicas, reason=reason, waiting=waiting))

    def scale_events(self, run_id: str) -> list[dict[str, Any]]:
        with self._read() as conn:
            return scale_events_of(conn, self._resolve(conn, run_id))
