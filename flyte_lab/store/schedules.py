"""Schedules, their fire times and notification deliveries: a mixin of `RunStore`.

A fire time becomes a run through three guarded writes, each one short transaction:
`plan_fires` decides which fire times are due and records them `pending` (the
schedule's cursor moves in the same transaction, so two schedulers never plan the
same time twice); `claim_fire` moves one `pending` fire (or a `claimed` one whose
claimant died or whose lease expired) to `claimed` by this owner, after checking the
schedule's overlap policy; the launcher marks it `launched` with its run id once the
run exists. The runs table's unique (schedule, scheduled_time) is the last guard: a
slow claimant and its successor can both try, only one run is ever created.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, DateTime, String, and_, delete, func, insert, select, type_coerce, update

from flyte_lab.errors import ScheduleExists, ScheduleNotFound
from flyte_lab.statuses import RUN_LIVE
from flyte_lab.store.rows import dumps, iso, loads, now_utc
from flyte_lab.store.schema import Notification, Run, Schedule, ScheduleFire
from flyte_lab.store.store_part import StorePart

FIRE_STATES = frozenset({"pending", "claimed", "launched", "skipped", "failed"})
# a fire whose launch crashed this many times is given up (recorded `failed`), not retried forever
MAX_CLAIMS = 3

# (schedule row as a dict) -> (fire times to run, ascending; the new cursor)
Planner = Callable[[dict[str, Any]], tuple[list[datetime], datetime | None]]
OwnerAlive = Callable[[str], bool | None]
# (driver host, driver pid) -> False if that driver is known dead (its run is no longer going), else True/None
DriverAlive = Callable[[str | None, int | None], bool | None]
# (schedule row as a dict, fire time, `skipped: WHY` | `failed: WHY`): a fire time settled without a run
Dropped = Callable[[dict[str, Any], datetime, str], None]


def _stored_time(value: Any) -> datetime | None:
    """A DateTime column read raw: SQLite hands back the text, which a hand edit may have spoiled."""
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    if value is None or isinstance(value, datetime):
        return value
    raise TypeError(f"{value!r} is not a time")


def _stored_iso(value: Any) -> str | None:
    return iso(_stored_time(value))


def _stored_params(text: str | None) -> dict[str, str]:
    value = loads(text)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("expected a JSON object of strings")
    return value


def _stored_notify(text: str | None) -> list[str]:
    value = loads(text)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a JSON array of strings")
    return value


def schedule_view(row: Any) -> dict[str, Any]:
    """A schedule row as the `schedule list --json` element (times as ISO-8601 UTC).

    Never raises: a column that cannot be decoded (an older version's row, a hand edit) is left empty
    and named in `invalid`, so one bad row cannot stop the readers of the others.
    """
    problems: list[str] = []

    def decode(column: str, fn: Callable[[], Any], empty: Any) -> Any:
        try:
            return fn()
        except (ValueError, TypeError) as exc:
            problems.append(f"its stored {column} cannot be read ({exc})")
            return empty

    times = {key: decode(key, functools.partial(_stored_iso, getattr(row, column)), None)
             for key, column in (("start", "start_at"), ("created_at", "created_at"), ("cursor", "cursor_at"))}
    return {
        "name": row.name,
        "notebook": row.notebook,
        "notebook_hash": row.notebook_hash,
        "cron": row.cron,
        "every_s": row.every_s,
        "timezone": row.timezone,
        "params": decode("params", functools.partial(_stored_params, row.params_json), {}),
        "start": times["start"],
        "catchup": bool(row.catchup),
        "max_catchup": row.max_catchup,
        "max_active": row.max_active,
        "overlap": row.overlap,
        "paused": bool(row.paused),
        "notify": decode("notify", functools.partial(_stored_notify, row.notify_json), []),
        "created_at": times["created_at"],
        "cursor": times["cursor"],
        "invalid": "; ".join(problems) or None,
    }


# the schedules table with its times read as stored (text on SQLite), for `schedule_view` to decode
SCHEDULE_ROW = select(*(type_coerce(c, String).label(c.name) if isinstance(c.type, DateTime) else c
                        for c in Schedule.__table__.columns))


def fire_view(row: Any) -> dict[str, Any]:
    return {
        "schedule": row.schedule,
        "fire_time": iso(row.fire_time),
        "state": row.state,
        "owner": row.owner,
        "run_id": row.run_id,
        "claims": row.claims,
        "reason": row.reason,
    }


class SchedulesMixin(StorePart):
    """Schedules, fire-time claims and notification records; `RunStore` provides the transactions."""

    # -- schedules -------------------------------------------------------------------

    def add_schedule(self, schedule: dict[str, Any]) -> None:
        """Store a validated schedule (`scheduler.spec.ScheduleSpec.row()`); refuses a taken name."""
        row = dict(schedule)
        row["params_json"] = dumps(row.pop("params", {}))
        row["notify_json"] = dumps(row.pop("notify", []))
        row.setdefault("created_at", now_utc())
        with self._write() as conn:
            if conn.execute(select(Schedule.name).where(Schedule.name == row["name"])).first():
                raise ScheduleExists(f"a schedule named `{row['name']}` already exists; pick another --name "
                                     f"or `flyte-lab schedule remove {row['name']}` first", name=row["name"])
            conn.execute(insert(Schedule), [row])

    def get_schedule(self, name: str) -> dict[str, Any]:
        with self._read() as conn:
            row = conn.execute(SCHEDULE_ROW.where(Schedule.name == name)).first()
        if row is None:
            raise self._no_schedule(name)
        return schedule_view(row)

    def list_schedules(self) -> list[dict[str, Any]]:
        """Every schedule with its last run (`last_run`: run id, status, fire time, or None)."""
        with self._read() as conn:
            rows = conn.execute(SCHEDULE_ROW.order_by(Schedule.name)).all()
            latest = (
                select(Run.schedule, func.max(Run.scheduled_time).label("fire"))
                .where(Run.schedule.is_not(None))
                .group_by(Run.schedule)
                .subquery()
            )
            last = conn.execute(
                select(Run.schedule, Run.run_id, Run.status, Run.scheduled_time).join(
                    latest, and_(Run.schedule == latest.c.schedule, Run.scheduled_time == latest.c.fire)
                )
            ).all()
        last_runs = {r.schedule: {"run_id": r.run_id, "status": r.status, "scheduled_time": iso(r.scheduled_time)}
                     for r in last}
        return [dict(schedule_view(r), last_run=last_runs.get(r.name)) for r in rows]

    def set_schedule_paused(self, name: str, paused: bool) -> None:
        """Pause or resume; resuming moves the cursor to now, so time spent paused is not caught up."""
        with self._write() as conn:
            values: dict[str, Any] = {"paused": paused}
            if not paused:
                try:
                    current = _stored_time(conn.scalar(
                        select(type_coerce(Schedule.cursor_at, String)).where(Schedule.name == name)))
                except (ValueError, TypeError):
                    current = None  # a spoiled cursor: resuming from now is what resume does anyway
                now = now_utc()
                values["cursor_at"] = now if current is None or current < now else current
            if conn.execute(update(Schedule).where(Schedule.name == name).values(**values)).rowcount == 0:
                raise self._no_schedule(name)

    def remove_schedule(self, name: str) -> None:
        """Delete the schedule and its fire-time records; its runs stay in the store."""
        with self._write() as conn:
            conn.execute(delete(ScheduleFire).where(ScheduleFire.schedule == name))
            if conn.execute(delete(Schedule).where(Schedule.name == name)).rowcount == 0:
                raise self._no_schedule(name)

    def _no_schedule(self, name: str) -> ScheduleNotFound:
        return ScheduleNotFound(f"no schedule named `{name}`; `flyte-lab schedule list` shows them", name=name)

    # -- fire times --------------------------------------------------------------------

    def plan_fires(self, name: str, planner: Planner) -> list[datetime]:
        """Record the fire times `planner` finds due as `pending` and move the cursor; returns them.

        One write transaction, so the cursor read and written is the one two schedulers see in turn.
        A paused schedule plans nothing.
        """
        now = now_utc()
        with self._write() as conn:
            row = conn.execute(SCHEDULE_ROW.where(Schedule.name == name)).first()
            if row is None or row.paused:
                return []
            fires, cursor = planner(schedule_view(row))
            planned = []
            for fire in fires:
                known = conn.execute(select(ScheduleFire.state).where(
                    ScheduleFire.schedule == name, ScheduleFire.fire_time == fire)).first()
                if known is None:
                    conn.execute(insert(ScheduleFire).values(schedule=name, fire_time=fire, state="pending",
                                                             claims=0, planned_at=now, updated_at=now))
                    planned.append(fire)
            current = _stored_time(row.cursor_at)  # the planner read it without complaint
            if cursor is not None and (current is None or cursor > current):
                conn.execute(update(Schedule).where(Schedule.name == name).values(cursor_at=cursor))
        return planned

    def claim_fire(self, owner: str, lease_s: float, owner_alive: OwnerAlive,
                   driver_alive: DriverAlive | None = None,
                   on_dropped: Dropped | None = None) -> dict[str, Any] | None:
        """Claim the oldest launchable fire time of any schedule for `owner`, or None.

        Launchable: `pending`, or `claimed` by an owner that is dead (`owner_alive` says
        False) or whose lease expired. A schedule at its `max_active` either skips the
        fire (recorded `skipped`, with the reason) or leaves it pending (`queue`); a queued or
        running run whose driver `driver_alive` knows to be dead does not count as active.
        `on_dropped(schedule, fire_time, reason)` hears each fire time settled here without a run (skipped,
        given up). Returns `{"schedule": {...}, "fire_time": datetime, "claims": n}`.
        """
        now = now_utc()
        with self._write() as conn:
            candidates = conn.execute(
                select(ScheduleFire)
                .where(ScheduleFire.state.in_(("pending", "claimed")))
                .order_by(ScheduleFire.fire_time, ScheduleFire.schedule)
            ).all()
            schedules = {r.name: r for r in conn.execute(SCHEDULE_ROW.where(
                Schedule.name.in_({f.schedule for f in candidates}))).all()}
            for fire in candidates:
                sched = schedules.get(fire.schedule)
                if sched is None:
                    continue
                if fire.state == "claimed" and not _stale(fire, now, owner_alive):
                    continue
                existing = conn.scalar(select(Run.run_id).where(
                    Run.schedule == fire.schedule, Run.scheduled_time == fire.fire_time))
                if existing is not None:  # its claimant made the run, then died before saying so
                    self._set_fire(conn, fire, state="launched", run_id=existing, now=now)
                    continue
                if fire.claims >= MAX_CLAIMS:
                    reason = f"its launch was interrupted {fire.claims} times; given up"
                    self._set_fire(conn, fire, state="failed", now=now, reason=reason)
                    if on_dropped is not None:
                        on_dropped(schedule_view(sched), fire.fire_time, f"failed: {reason}")
                    continue
                if sched.paused and fire.state == "pending":
                    continue
                earlier, active = self._active(conn, fire, now, owner_alive, driver_alive)
                if active >= sched.max_active:
                    if sched.overlap == "skip" and earlier >= sched.max_active:
                        reason = (f"{earlier} earlier run(s) of this schedule still active "
                                  f"(--max-active {sched.max_active}, --overlap skip)")
                        self._set_fire(conn, fire, state="skipped", now=now, reason=reason)
                        if on_dropped is not None:
                            on_dropped(schedule_view(sched), fire.fire_time, f"skipped: {reason}")
                    continue
                conn.execute(
                    update(ScheduleFire)
                    .where(ScheduleFire.schedule == fire.schedule, ScheduleFire.fire_time == fire.fire_time)
                    .values(state="claimed", owner=owner, claims=fire.claims + 1, updated_at=now,
                            lease_expires_at=now + timedelta(seconds=lease_s))
                )
                return {"schedule": schedule_view(sched), "fire_time": fire.fire_time, "claims": fire.claims + 1}
        return None

    def _active(self, conn: Connection, fire: Any, now: datetime, owner_alive: OwnerAlive,
                driver_alive: DriverAlive | None) -> tuple[int, int]:
        """(earlier, all): runs of this schedule queued or running plus fire times claimed and not launched yet;
        `earlier` counts those found due by an earlier planning pass than `fire`'s (the ones `skip` skips for).
        """
        runs = conn.execute(
            select(Run.scheduled_time, Run.driver_host, Run.driver_pid, ScheduleFire.planned_at)
            .outerjoin(ScheduleFire, and_(ScheduleFire.schedule == Run.schedule,
                                          ScheduleFire.fire_time == Run.scheduled_time))
            .where(Run.schedule == fire.schedule, Run.status.in_(sorted(RUN_LIVE)))
        ).all()
        planned = [r.planned_at for r in runs
                   if driver_alive is None or driver_alive(r.driver_host, r.driver_pid) is not False]
        claimed = conn.execute(select(ScheduleFire).where(
            ScheduleFire.schedule == fire.schedule, ScheduleFire.state == "claimed",
            ScheduleFire.fire_time != fire.fire_time)).all()
        for other in claimed:
            has_run = conn.scalar(select(Run.run_id).where(
                Run.schedule == fire.schedule, Run.scheduled_time == other.fire_time)) is not None
            if not has_run and not _stale(other, now, owner_alive):
                planned.append(other.planned_at)
        earlier = sum(1 for p in planned if p is None or p < fire.planned_at)
        return earlier, len(planned)

    def _set_fire(self, conn: Connection, fire: Any, *, state: str, now: datetime, run_id: str | None = None,
                  reason: str | None = None) -> None:
        conn.execute(
            update(ScheduleFire)
            .where(ScheduleFire.schedule == fire.schedule, ScheduleFire.fire_time == fire.fire_time)
            .values(state=state, run_id=run_id, reason=reason, updated_at=now)
        )

    def mark_fire(self, name: str, fire_time: datetime, state: str, *, run_id: str | None = None,
                  reason: str | None = None) -> None:
        """Record how a claimed fire time ended: `launched` (with its run), `failed`, or back to `pending`."""
        if state not in FIRE_STATES:
            raise ValueError(f"unknown fire state {state!r}; expected one of {sorted(FIRE_STATES)}")
        values: dict[str, Any] = {"state": state, "updated_at": now_utc()}
        if run_id is not None:
            values["run_id"] = run_id
        if reason is not None:
            values["reason"] = reason
        if state == "pending":
            values.update(owner=None, lease_expires_at=None)
        with self._write() as conn:
            conn.execute(update(ScheduleFire).where(
                ScheduleFire.schedule == name, ScheduleFire.fire_time == fire_time,
                ScheduleFire.state.in_(("pending", "claimed"))).values(**values))

    def schedule_fires(self, name: str | None = None) -> list[dict[str, Any]]:
        """Recorded fire times (all schedules, or one), oldest first."""
        query = select(ScheduleFire).order_by(ScheduleFire.fire_time, ScheduleFire.schedule)
        if name is not None:
            query = query.where(ScheduleFire.schedule == name)
        with self._read() as conn:
            return [fire_view(r) for r in conn.execute(query).all()]

    # -- notifications -------------------------------------------------------------------

    def record_notification(self, run_id: str, event: str, target: str, status: str, attempts: int,
                            error: str | None = None) -> None:
        with self._write() as conn:
            conn.execute(insert(Notification).values(run_id=run_id, event=event, target=target, status=status,
                                                     attempts=attempts, error=error, created_at=now_utc()))

    def notifications(self, run_id: str) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(select(Notification).where(Notification.run_id == run_id)
                                .order_by(Notification.id)).all()
        return [{"event": r.event, "target": r.target, "status": r.status, "attempts": r.attempts,
                 "error": r.error, "created_at": iso(r.created_at)} for r in rows]


def _stale(fire: Any, now: datetime, owner_alive: OwnerAlive) -> bool:
    """A claim nobody is carrying out any more: its owner is known dead, or its lease ran out."""
    if fire.owner is None:
        return True
    alive = owner_alive(fire.owner)
    if alive is not None:
        return not alive
    return fire.lease_expires_at is None or fire.lease_expires_at < now
