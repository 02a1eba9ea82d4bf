"""The scheduler's log (its stderr, shared with the launches it starts): one line per fire time it handles.

Each line names the schedule, the fire time in the schedule's timezone, why it fires now (on time, or a catch-up
of a time missed by how much, and a relaunch after a launcher stopped) and what came of it (the run it started,
or why none: skipped, refused). The libraries a launch drives (Dask, papermill, tornado...) speak only when they
warn: their INFO lines, dozens per run, would bury these.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

from flyte_lab.presentation.formats import format_duration, format_fire_time

# launched within this of its fire time: on time (a pass wakes at the fire time; claiming and spawning take ~1 s)
ON_TIME_S = 60.0
QUIET = ("distributed", "dask", "papermill", "nbclient", "tornado", "bokeh", "traitlets", "alembic", "asyncio")


def configure(*, dask_loaded: bool = False) -> None:
    """Our log at INFO on stderr, the libraries' at WARNING and up. `dask_loaded`: import Dask's logging set-up
    first (a launch's run imports it later, and its import sets `distributed` to INFO with a handler of its own)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("flyte_lab").setLevel(logging.INFO)
    if dask_loaded:
        import distributed.config  # noqa: F401
    for name in QUIET:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:  # tornado's CRITICAL (Dask's choice) stays
            logger.setLevel(logging.WARNING)


def why(fire: datetime, now: datetime, claims: int = 1) -> str:
    """Why fire time `fire` (aware or naive UTC) is launched at `now`: `on time`, or `catch-up of a missed time,
    30m00s late`; a relaunch says so."""
    late = (now - (fire if fire.tzinfo is not None else fire.replace(tzinfo=UTC))).total_seconds()
    reason = "on time" if late <= ON_TIME_S else f"catch-up of a missed time, {format_duration(late)} late"
    if claims > 1:
        reason += f"; claim {claims}: its previous launcher stopped"
    return reason


def line(schedule: dict[str, Any], fire: datetime, reason: str, outcome: str) -> str:
    """`schedule daily: Wed 2 Dec, 07:00 CET (on time): started run 20261202-060001-ab12cd`."""
    when = fire if fire.tzinfo is not None else fire.replace(tzinfo=UTC)
    try:
        shown = format_fire_time(when, str(schedule["timezone"]))
    except (ZoneInfoNotFoundError, ValueError, OSError):  # a stored row gone bad: its line still says when
        shown = format_fire_time(when, "UTC")
    return f"schedule {schedule['name']}: {shown} ({reason}): {outcome}"
