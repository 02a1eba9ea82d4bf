"""Fire times: cron expressions in a named timezone, or a fixed rate counted from the start.

Cron times are wall-clock times in the schedule's timezone, mapped to UTC with
zoneinfo. Across daylight-saving changes each matching wall time fires once:
- a wall time the clocks skip (02:30 on a spring-forward night) fires later by the
  length of the gap (03:30 new time), as `java.time` and zoneinfo's fold=0 do;
- a wall time that happens twice (01:30 on a fall-back night) fires at its first
  occurrence only;
- two wall times that land on the same instant fire once.

Every datetime here is aware UTC; the store's naive UTC is converted at its edge.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from flyte_lab.errors import UserInputError

_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_LONG_YEAR = re.compile(r"^\s*[+-]?\d{5,}-")  # `10000-01-01`: fromisoformat would only say "invalid"
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def check_cron(expr: str) -> str:
    """The expression if croniter reads it as five fields or an `@hourly`-style alias."""
    text = " ".join(expr.split())
    fields = text.split(" ")
    if not text.startswith("@") and len(fields) != 5:
        raise UserInputError(f"--cron `{expr}`: a cron expression has five fields (minute hour day-of-month "
                             f"month day-of-week), got {len(fields)}; for example `0 7 * * *` is every day at 07:00")
    try:
        croniter(text, datetime(2000, 1, 1))
    except (CroniterError, ValueError, KeyError) as exc:
        reason = str(exc).replace(f"[{text}] ", "")
        raise UserInputError(f"--cron `{expr}`: {reason}; fields are minute 0-59, hour 0-23, day 1-31, "
                             f"month 1-12, day-of-week 0-6") from None
    return text


def parse_every(text: str) -> float:
    """`--every 15m` as seconds (`s`, `m`, `h`, `d`); `checks` bounds it."""
    match = _EVERY.match(text)
    if not match:
        raise UserInputError(f"--every `{text}`: expected a positive number and a unit, like 30s, 15m, 2h or 1d")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        raise UserInputError(f"--timezone `{name}`: not a timezone zoneinfo knows; use an IANA name such as "
                             f"`Europe/Paris`, `America/New_York` or `UTC`") from None


def parse_time(text: str, tz: ZoneInfo | None = None, what: str = "time") -> datetime:
    """An ISO-8601 time as aware UTC; a time without an offset is read in `tz` (UTC if none)."""
    out_of_range = UserInputError(f"{what} `{text}`: out of range; a time is in the years 1 to 9999 (in UTC)")
    if _LONG_YEAR.match(text):
        raise out_of_range
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserInputError(f"{what} `{text}`: not an ISO-8601 time; write e.g. 2026-03-08T07:00 "
                             f"or 2026-03-08T07:00:00+01:00") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz or UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00 west of UTC is in year 10000
        raise out_of_range from None


def to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """A naive wall-clock time in `tz` as aware UTC (fold=0: gap times move later, repeated ones go first)."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _cron_before(expr: str, tz: ZoneInfo, until: datetime) -> Iterator[datetime]:
    """Cron fire times at or before `until`, newest first."""
    it = croniter(expr, _wall(until, tz) + timedelta(seconds=1))
    last: datetime | None = None
    while True:
        fire = to_utc(it.get_prev(datetime), tz)
        if fire > until or (last is not None and fire >= last):
            continue  # a fall-back hour seen from its second pass, or a gap time already fired
        last = fire
        yield fire


def _cron_after(expr: str, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Cron fire times strictly after `after`, oldest first."""
    it = croniter(expr, _wall(after, tz))
    last = after
    while True:
        fire = to_utc(it.get_next(datetime), tz)
        if fire <= last:
            continue
        last = fire
        yield fire


def latest_fires(cron: str | None, every_s: float | None, tz: ZoneInfo, start: datetime,
                 after: datetime | None, until: datetime, limit: int) -> list[datetime]:
    """The newest `limit` fire times in [start, until] that are later than `after`, oldest first."""
    lower = after if after is not None and after >= start else start - timedelta(microseconds=1)
    if until <= lower or limit < 1:
        return []
    found: list[datetime] = []
    if every_s is not None:
        step = timedelta(seconds=every_s)
        k = int((until - start) / step)
        while k >= 0 and len(found) < limit:
            fire = start + k * step
            if fire <= lower:
                break
            found.append(fire)
            k -= 1
    else:
        assert cron is not None
        for fire in _cron_before(cron, tz, until):
            if fire <= lower or len(found) >= limit:
                break
            found.append(fire)
    return found[::-1]


def next_fire(cron: str | None, every_s: float | None, tz: ZoneInfo, start: datetime,
              after: datetime) -> datetime:
    """The first fire time later than `after` (and not before `start`)."""
    if every_s is not None:
        if after < start:
            return start
        step = timedelta(seconds=every_s)
        return start + (int((after - start) / step) + 1) * step
    assert cron is not None
    base = max(after, start - timedelta(microseconds=1))
    return next(_cron_after(cron, tz, base))


def fires_between(cron: str | None, every_s: float | None, tz: ZoneInfo, start: datetime,
                  after: datetime, until: datetime) -> list[datetime]:
    """Every fire time in (after, until], oldest first (for listings and tests: mind the range)."""
    out: list[datetime] = []
    fire = next_fire(cron, every_s, tz, start, after)
    while fire <= until:
        out.append(fire)
        fire = next_fire(cron, every_s, tz, start, fire)
    return out
