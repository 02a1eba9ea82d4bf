"""Fire times and catch-up planning: pure functions, a fake clock, no store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flyte_lab.errors import UserInputError
from flyte_lab.scheduler import timing
from flyte_lab.scheduler.loop import planner

NY = timing.zone("America/New_York")
PARIS = timing.zone("Europe/Paris")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_daily_cron_keeps_its_wall_time_across_both_dst_changes() -> None:
    fires = timing.fires_between("0 9 * * *", None, NY, utc(2026, 1, 1), utc(2026, 3, 6), utc(2026, 3, 10))
    assert [f.astimezone(NY).hour for f in fires] == [9, 9, 9, 9]
    assert [f.hour for f in fires] == [14, 14, 13, 13]  # EST then EDT
    fires = timing.fires_between("0 9 * * *", None, PARIS, utc(2026, 1, 1), utc(2026, 10, 23), utc(2026, 10, 27))
    assert [f.hour for f in fires] == [7, 7, 8, 8]  # CEST then CET (Europe changes on 25 October)


def test_wall_time_skipped_by_spring_forward_fires_once_after_the_gap() -> None:
    # 02:30 does not exist in New York on 8 March 2026: it fires at 03:30 EDT, once
    fires = timing.fires_between("30 2 * * *", None, NY, utc(2026, 1, 1), utc(2026, 3, 7), utc(2026, 3, 10))
    assert [f.astimezone(NY).isoformat() for f in fires] == [
        "2026-03-07T02:30:00-05:00", "2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00"]
    hourly = timing.fires_between("30 * * * *", None, NY, utc(2026, 1, 1), utc(2026, 3, 8, 5), utc(2026, 3, 8, 9))
    assert len(hourly) == len(set(hourly)) == 4  # 02:30 and 03:30 land on the same instant: one fire


def test_wall_time_repeated_by_fall_back_fires_once() -> None:
    fires = timing.fires_between("30 1 * * *", None, NY, utc(2026, 1, 1), utc(2026, 10, 31), utc(2026, 11, 3))
    assert [f.astimezone(NY).isoformat() for f in fires] == [
        "2026-10-31T01:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]


def test_latest_fires_walks_back_the_same_times_as_forward() -> None:
    start, until = utc(2026, 3, 1), utc(2026, 11, 15)
    for expr, tz in (("30 1 * * *", NY), ("30 2 * * *", NY), ("15 */5 * * 1-5", PARIS), ("@hourly", NY)):
        forward = timing.fires_between(expr, None, tz, start, start - timedelta(microseconds=1), until)
        assert timing.latest_fires(expr, None, tz, start, None, until, 10**6) == forward
        assert timing.latest_fires(expr, None, tz, start, forward[-4], until, 2) == forward[-2:]


def test_fixed_rate_counts_from_start_inclusive() -> None:
    start = utc(2026, 1, 1, 12)
    assert timing.latest_fires(None, 900, UTC, start, None, start + timedelta(minutes=31), 10) == [
        start, start + timedelta(minutes=15), start + timedelta(minutes=30)]
    assert timing.next_fire(None, 900, UTC, start, start) == start + timedelta(minutes=15)
    assert timing.next_fire(None, 900, UTC, start, start - timedelta(days=1)) == start


def _schedule(**kw: object) -> dict[str, object]:
    base = {"name": "s", "cron": "0 * * * *", "every_s": None, "timezone": "UTC", "start": "2026-01-01T00:00:00+00:00",
            "cursor": None, "catchup": False, "max_catchup": 50}
    base.update(kw)
    return base


def test_catchup_off_plans_only_the_latest_missed_fire_time() -> None:
    fires, cursor = planner(utc(2026, 1, 1, 5, 30))(_schedule())
    assert fires == [datetime(2026, 1, 1, 5)] and cursor == datetime(2026, 1, 1, 5)
    # nothing new is due until the next hour
    assert planner(utc(2026, 1, 1, 5, 59))(_schedule(cursor="2026-01-01T05:00:00+00:00")) == ([], None)


def test_catchup_on_plans_every_missed_fire_time_up_to_the_bound() -> None:
    fires, _ = planner(utc(2026, 1, 1, 5, 30))(_schedule(catchup=True))
    assert fires == [datetime(2026, 1, 1, h) for h in range(6)]  # start (00:00) is a fire time too
    fires, cursor = planner(utc(2026, 1, 1, 5, 30))(_schedule(catchup=True, max_catchup=2))
    assert fires == [datetime(2026, 1, 1, 4), datetime(2026, 1, 1, 5)] and cursor == datetime(2026, 1, 1, 5)
    fires, _ = planner(utc(2026, 1, 1, 5, 30))(_schedule(catchup=True, cursor="2026-01-01T03:00:00+00:00"))
    assert fires == [datetime(2026, 1, 1, 4), datetime(2026, 1, 1, 5)]


def test_nothing_is_due_before_start() -> None:
    assert planner(utc(2026, 1, 1))(_schedule(start="2026-02-01T00:00:00+00:00", catchup=True)) == ([], None)


@pytest.mark.parametrize(("expr", "says"), [
    ("61 * * * *", "out of range"),
    ("* * * *", "five fields"),
    ("0 7 * * mon-xyz", "fields are minute"),
    ("@fortnightly", "fields are minute"),
])
def test_bad_cron_is_refused_with_the_reason(expr: str, says: str) -> None:
    with pytest.raises(UserInputError, match=says):
        timing.check_cron(expr)


def test_aliases_and_intervals() -> None:
    assert timing.check_cron("@daily") == "@daily"
    assert timing.check_cron(" 0  7 * * 1-5 ") == "0 7 * * 1-5"
    assert timing.parse_every("15m") == 900 and timing.parse_every("1.5h") == 5400
    for bad in ("15", "-1h", "15 minutes", "1e3s", "nan"):
        with pytest.raises(UserInputError, match="--every"):
            timing.parse_every(bad)
    with pytest.raises(UserInputError, match="IANA"):
        timing.zone("Mars/Olympus")
