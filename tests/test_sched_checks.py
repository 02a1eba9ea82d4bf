"""The timing rules of `scheduler.checks`: what they accept always has fire times the scheduler can compute."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from flyte_lab.errors import UserInputError
from flyte_lab.scheduler import checks
from flyte_lab.scheduler.loop import planner

ZONES = ["UTC", "America/New_York", "Europe/Paris", "Australia/Lord_Howe", "Pacific/Kiritimati",
         "Pacific/Pago_Pago", "Asia/Kolkata", "America/St_Johns", "Antarctica/Troll"]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _field(fixed: list[str], low: int, high: int) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(fixed), st.integers(low, high).map(str))


CRONS = st.one_of(
    st.sampled_from(["@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@midnight"]),
    st.tuples(
        _field(["*", "*/7", "0,30", "5-10", "60"], 0, 59),
        _field(["*", "*/5", "0-3", "24"], 0, 23),
        _field(["*", "L", "1-5", "*/10", "0"], 1, 32),  # 29-31 (and 32) meet short months
        _field(["*", "feb", "4,6,9,11", "*/3", "13"], 1, 12),
        _field(["*", "1-5", "mon", "5#5", "7", "sun,sat"], 0, 6),
    ).map(" ".join),
)
EVERIES = st.one_of(
    st.from_regex(r"\A[0-9]{1,22}(\.[0-9]{1,9})?[smhd]\Z"),
    st.sampled_from(["0.0000001s", "0.999s", "1s", "3653d", "3654d", "87672h", "60m"]),
)
TIMES = st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))
STARTS = st.one_of(st.none(), st.sampled_from(["9999-12-31T23:59", "1970-01-01T00:00"]),
                   TIMES.map(lambda t: t.isoformat(timespec="seconds")))


def _stored(when: checks.When) -> dict[str, Any]:
    """The store's view of the row `schedule add` would write (catch-up on: the planner walks back)."""
    return {"name": "s", "cron": when.cron, "every_s": when.every_s, "timezone": when.timezone,
            "start": when.start.isoformat(), "cursor": None, "catchup": True, "max_catchup": 50, "invalid": None}


@settings(max_examples=400, deadline=None)
@given(st.one_of(CRONS.map(lambda c: (c, None)), EVERIES.map(lambda e: (None, e))), st.sampled_from(ZONES),
       STARTS, TIMES.filter(lambda t: t.year >= 1970).map(lambda t: t.replace(tzinfo=UTC)))
@example(("0 0 29 2 *", None), "UTC", "2096-03-01T00:00", utc(2026, 1, 1))  # the longest gap: 2104
@example(("30 2 * * *", None), "America/New_York", "9999-12-25T00:00", utc(2026, 1, 1))
@example((None, "1s"), "UTC", "9999-12-31T23:59:55", utc(2026, 1, 1))
@example((None, "3653d"), "Pacific/Kiritimati", "1970-01-01T00:00", utc(9999, 12, 31, 23, 59))
def test_an_accepted_timing_has_fire_times_the_scheduler_can_compute(
        timing: tuple[str | None, str | None], timezone: str, start: str | None, now: datetime) -> None:
    cron, every = timing
    try:
        when = checks.parse_when(cron, every, timezone, start, now)
    except UserInputError as exc:
        event(f"refused: {exc.message.split(': ')[-1][:40]}")
        return  # refused in one line; any other exception fails this test
    event("accepted")
    assert len(when.fires) == checks.AHEAD
    assert when.fires[0] > now and when.fires[0] >= when.start
    assert all(a < b for a, b in pairwise(when.fires))
    # the stored row passes the same rules, and the scheduler plans from it
    assert checks.stored_when(_stored(when), now).fires == when.fires
    assert planner(now)(_stored(when)) is not None
    if when.fires[-1].year < 9990:  # later, its walk back meets the forward one (at the end of 9999 the row
        # is refused: its next five fire times no longer exist)
        due, cursor = planner(when.fires[-1])(_stored(when))
        assert cursor == when.fires[-1].replace(tzinfo=None)
        assert [d.replace(tzinfo=UTC) for d in due][-checks.AHEAD:] == list(when.fires)


def test_fire_times_across_daylight_saving_changes_are_accepted_as_the_scheduler_fires_them() -> None:
    gap = checks.parse_when("30 2 * * *", None, "America/New_York", None, utc(2026, 3, 7, 12))
    # 02:30 does not exist on 8 March: it fires at 03:30 EDT, once
    assert [f.astimezone(gap.tz).isoformat() for f in gap.fires[:2]] == [
        "2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00"]
    repeated = checks.parse_when("30 1 * * *", None, "America/New_York", None, utc(2026, 10, 31, 12))
    assert [f.astimezone(repeated.tz).isoformat() for f in repeated.fires[:2]] == [
        "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]  # the first 01:30 only


@pytest.mark.parametrize(("schedule", "says"), [
    ({"cron": "0 0 30 2 *", "every_s": None}, "never fires"),
    ({"cron": None, "every_s": 0.0}, "--every `0s`: an interval is at least 1s"),
    ({"cron": None, "every_s": "abc"}, "its interval `abc` is not a number of seconds"),
    ({"cron": "0 7 * * *", "every_s": 60.0}, "both or neither"),
    ({"cron": None, "every_s": 60.0, "timezone": "Mars/Olympus"}, "--timezone `Mars/Olympus`"),
    ({"cron": None, "every_s": 60.0, "start": "0001-01-01T00:00:00+00:00"}, "starts on 1970-01-01 or later"),
    ({"cron": None, "every_s": 60.0, "invalid": "its stored params cannot be read"}, "stored params"),
])
def test_a_stored_row_the_rules_refuse_is_invalid(schedule: dict[str, Any], says: str) -> None:
    row = {"timezone": "UTC", "start": "2026-01-01T00:00:00+00:00", "invalid": None, **schedule}
    with pytest.raises(checks.InvalidSchedule) as refused:
        checks.stored_when(row, utc(2026, 6, 1))
    assert says in refused.value.message
