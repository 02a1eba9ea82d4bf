"""Schedules as readers see them: next fire time, last run, warnings. `schedule list`, the dashboard and REST use it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from flyte_lab.notebook_hash import hash_notebook
from flyte_lab.scheduler import checks, timing
from flyte_lab.scheduler.notify import redact


def next_fire_time(schedule: dict[str, Any], now: datetime) -> datetime | None:
    """When the schedule fires next after `now` (aware UTC), or None while it is paused.

    Raises `checks.InvalidSchedule` for a stored row the rules refuse.
    """
    when = checks.stored_when(schedule, now)
    if schedule["paused"]:
        return None
    cursor = datetime.fromisoformat(schedule["cursor"]) if schedule["cursor"] else None
    if cursor is None or cursor <= now:
        return when.fires[0]
    return timing.next_fire(when.cron, when.every_s, when.tz, when.start, cursor)


def describe(schedule: dict[str, Any]) -> str:
    """`0 7 * * *` or `every 900s`, whatever the row holds."""
    every = schedule["every_s"]
    return str(schedule["cron"]) if schedule["cron"] is not None else (
        f"every {every:g}s" if isinstance(every, int | float) else f"every {every!r}")


def status(schedule: dict[str, Any]) -> str:
    """`invalid: WHY`, `paused`, or `active` (with `(changed)` when the notebook changed), for listings."""
    if schedule["invalid"]:
        return f"invalid: {schedule['invalid']}"
    return "paused" if schedule["paused"] else "active" + (" (changed)" if schedule["notebook_changed"] else "")


def warnings(schedule: dict[str, Any]) -> list[str]:
    """What a reader should know: the notebook is gone, or changed since the schedule was added."""
    path = Path(schedule["notebook"])
    current = hash_notebook(path)
    if current is None:
        return [f"notebook {path} is missing: its fire times will fail until it is back"]
    if schedule["notebook_hash"] and current != schedule["notebook_hash"]:
        return [f"notebook {path} changed since the schedule was added: runs use the current file; "
                f"`flyte-lab validate {path}` checks it"]
    return []


def overview(store: Any, now: datetime) -> list[dict[str, Any]]:
    """The `schedule list --json` array: each schedule with `next_fire_time`, `last_run`, `warnings` and
    `invalid` (why the scheduler skips a stored row the rules refuse, else None)."""
    out = []
    for schedule in store.list_schedules():
        found = warnings(schedule)
        try:
            nxt, invalid = next_fire_time(schedule, now), None
        except checks.InvalidSchedule as exc:
            nxt, invalid = None, exc.message
        # webhook URLs are secrets (a Slack hook's path is its key): readers see where, not the key
        shown = [f"{event}={redact(url)}" for event, _, url in (n.partition("=") for n in schedule["notify"])]
        out.append(dict(schedule, notify=shown, next_fire_time=nxt.isoformat() if nxt else None,
                        notebook_changed=bool(found), warnings=found, invalid=invalid))
    return out
