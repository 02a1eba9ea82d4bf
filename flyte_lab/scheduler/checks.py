"""The one set of rules a schedule's timing must pass, wherever it comes from.

`schedule add`, the REST body and the preview check what a user typed (`parse_when`);
the scheduler, `schedule list`, the dashboard and `GET /schedules` check every stored
row again (`stored_when`), since a row written by an older version or edited by hand
never went through these rules. A timing is accepted only when its next fire time and
the `AHEAD - 1` after it can be computed, so nothing that reads an accepted schedule
can fail on it:
- an interval is at least 1 s and at most ten years (a shorter one divides by zero in
  the fire-time arithmetic, a longer one overflows `datetime`);
- `--start` is from 1970 on (the scheduler walks back one fire time before it) and its
  fire times stay within year 9999 (`datetime`'s last);
- a cron has a fire time within ten years (a day that does not exist, such as
  30 February, never fires; one that does fires at least every 8 years: 29 February
  across 2100).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError

from flyte_lab.errors import UserInputError
from flyte_lab.scheduler import timing

AHEAD = 5  # fire times computed before a schedule is accepted; the preview shows them
HORIZON = timedelta(days=3653)  # ten years
MIN_EVERY_S = 1.0
MAX_EVERY_S = HORIZON.total_seconds()
EARLIEST_START = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidSchedule(UserInputError):
    """A stored schedule the rules refuse: reported and skipped, never fired."""


@dataclass(frozen=True)
class When:
    """A checked timing: exactly one of `cron` and `every_s`; `start` and `fires` aware UTC."""

    cron: str | None
    every_s: float | None
    timezone: str
    tz: ZoneInfo
    start: datetime
    fires: tuple[datetime, ...]  # the next AHEAD fire times after the `now` it was checked at


def parse_when(cron: str | None, every: str | None, timezone: str, start: str | None, now: datetime) -> When:
    """What a user typed (`--cron`/`--every`, `--timezone`, `--start`); `UserInputError` names the bad one."""
    if (cron is None) == (every is None):
        raise UserInputError('give exactly one of --cron "EXPR" or --every INTERVAL')
    expr = timing.check_cron(cron) if cron is not None else None
    every_s = timing.parse_every(every) if every is not None else None
    tz = timing.zone(timezone)
    first = timing.parse_time(start, tz, "--start") if start else now
    return check_when(expr, every_s, timezone, first.replace(microsecond=0), now, every_text=every)


def stored_when(schedule: dict[str, Any], now: datetime) -> When:
    """A stored schedule's timing under the same rules; `InvalidSchedule` says why the row cannot be used."""
    problem = schedule.get("invalid")
    if problem:
        raise InvalidSchedule(problem)
    cron, every_s, timezone, start = (schedule.get(k) for k in ("cron", "every_s", "timezone", "start"))
    try:
        if (cron is None) == (every_s is None):
            raise UserInputError("it has both or neither of a cron and an interval")
        if every_s is not None and (isinstance(every_s, bool) or not isinstance(every_s, int | float)):
            raise UserInputError(f"its interval `{every_s}` is not a number of seconds")
        if not isinstance(timezone, str) or not isinstance(start, str):
            raise UserInputError("its timezone or start is missing")
        expr = timing.check_cron(str(cron)) if cron is not None else None
        return check_when(expr, every_s, timezone, datetime.fromisoformat(start).astimezone(UTC), now)
    except UserInputError as exc:
        raise InvalidSchedule(exc.message) from None


def check_when(cron: str | None, every_s: float | None, timezone: str, start: datetime, now: datetime,
               every_text: str | None = None) -> When:
    """The rules above, on parsed values (`cron` already read by `timing.check_cron`)."""
    tz = timing.zone(timezone)
    what = f"--cron `{cron}`" if cron is not None else f"--every `{every_text or f'{every_s:g}s'}`"
    if every_s is not None:
        if math.isnan(every_s) or every_s < MIN_EVERY_S:
            raise UserInputError(f"{what}: an interval is at least 1s; for example 30s, 15m, 2h or 1d")
        if every_s > MAX_EVERY_S:  # infinity too
            raise UserInputError(f"{what}: an interval is at most {MAX_EVERY_S / 86400:g}d (ten years)")
    if start < EARLIEST_START:
        raise UserInputError(f"--start `{start.isoformat()}`: a schedule starts on 1970-01-01 or later")
    never = UserInputError(f"{what}: no fire time within ten years of {max(now, start):%Y-%m-%d}; a day that "
                           f"does not exist (such as 30 February) never fires")
    fires: list[datetime] = []
    try:
        for _ in range(AHEAD):
            fires.append(timing.next_fire(cron, every_s, tz, start, fires[-1] if fires else now))
    except CroniterBadDateError:  # croniter searched decades and found no matching date
        raise never from None
    except (OverflowError, ValueError):
        raise UserInputError(f"{what} from --start `{start.isoformat()}`: its fire times run past year 9999, "
                             f"the last a schedule can use") from None
    if cron is not None and fires[0] - max(now, start) > HORIZON:
        raise never
    return When(cron, every_s, timezone, tz, start, tuple(fires))
