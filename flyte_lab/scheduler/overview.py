"""Schedules as readers see them: next fire time, last run, warnings. `schedule list`, the dashboard and REST use it."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

from flyte_lab.scheduler import timing
from flyte_lab.scheduler.notify import redact


def content_hash(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def next_fire_time(schedule: dict[str, Any], now: datetime) -> datetime | None:
    """When the schedule fires next after `now` (aware UTC), or None while it is paused."""
    if schedule["paused"]:
        return None
    start = datetime.fromisoformat(schedule["start"])
    after = max(now, datetime.fromisoformat(schedule["cursor"])) if schedule["cursor"] else now
    return timing.next_fire(schedule["cron"], schedule["every_s"], timing.zone(schedule["timezone"]), start, after)


def warnings(schedule: dict[str, Any]) -> list[str]:
    """What a reader should know: the notebook is gone, or changed since the schedule was added."""
    path = Path(schedule["notebook"])
    current = content_hash(path)
    if current is None:
        return [f"notebook {path} is missing: its fire times will fail until it is back"]
    if schedule["notebook_hash"] and current != schedule["notebook_hash"]:
        return [f"notebook {path} changed since the schedule was added: runs use the current file; "
                f"`flyte-lab validate {path}` checks it"]
    return []


def overview(store: Any, now: datetime) -> list[dict[str, Any]]:
    """The `schedule list --json` array: each schedule with `next_fire_time`, `last_run` and `warnings`."""
    out = []
    for schedule in store.list_schedules():
        found = warnings(schedule)
        nxt = next_fire_time(schedule, now)
        # webhook URLs are secrets (a Slack hook's path is its key): readers see where, not the key
        shown = [f"{event}={redact(url)}" for event, _, url in (n.partition("=") for n in schedule["notify"])]
        out.append(dict(schedule, notify=shown, next_fire_time=nxt.isoformat() if nxt else None,
                        notebook_changed=bool(found), warnings=found))
    return out
