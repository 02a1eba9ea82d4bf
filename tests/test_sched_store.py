"""The schedules mixin of the run store: planning, claims, overlap policies. Real SQLite, fake owners."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from flyte_lab.errors import ScheduleExists, ScheduleNotFound
from flyte_lab.store import RunStore
from flyte_lab.store.schedules import MAX_CLAIMS

GRAPH: dict[str, Any] = {"tasks": [], "edges": []}
T1, T2, T3 = datetime(2026, 1, 1, 1), datetime(2026, 1, 1, 2), datetime(2026, 1, 1, 3)


@pytest.fixture
def store(tmp_path: Path):
    s = RunStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.close()


def _add(store: RunStore, name: str = "s", **kw: Any) -> None:
    row = {"name": name, "notebook": "/nb.ipynb", "notebook_hash": "h", "cron": "0 * * * *", "every_s": None,
           "timezone": "UTC", "params": {"n": "1"}, "start_at": datetime(2026, 1, 1), "catchup": True,
           "max_catchup": 50, "max_active": 1, "overlap": "skip", "paused": False, "notify": []}
    row.update(kw)
    store.add_schedule(row)


def _plan(store: RunStore, *fires: datetime, name: str = "s") -> list[datetime]:
    return store.plan_fires(name, lambda _s: (list(fires), fires[-1] if fires else None))


def _alive(*owners: str):
    return lambda owner: owner in owners


def _run(store: RunStore, fire: datetime, status: str = "running", name: str = "s") -> str:
    run_id = store.create_run("/nb.ipynb", {}, GRAPH, [], "local", name, fire, notebook_hash="h")
    store.set_run_status(run_id, status)
    return run_id


def _states(store: RunStore) -> dict[datetime, str]:
    return {datetime.fromisoformat(f["fire_time"]).replace(tzinfo=None): f["state"] for f in store.schedule_fires()}


def test_a_fire_time_is_planned_once_and_claimed_by_one_owner(store: RunStore) -> None:
    _add(store)
    assert _plan(store, T1) == [T1]
    assert _plan(store, T1) == []  # a second scheduler planning the same pass adds nothing
    assert store.get_schedule("s")["cursor"] == "2026-01-01T01:00:00+00:00"
    claim = store.claim_fire("A", 600, _alive("A", "B"))
    assert claim is not None and claim["fire_time"] == T1 and claim["schedule"]["params"] == {"n": "1"}
    assert store.claim_fire("B", 600, _alive("A", "B")) is None
    store.mark_fire("s", T1, "launched", run_id="r1")
    store.mark_fire("s", T1, "pending")  # a late "hand it back" from a launcher cannot undo a launch
    assert _states(store) == {T1: "launched"}


def test_a_dead_claimants_fire_time_is_claimed_again_and_a_made_run_is_not_remade(store: RunStore) -> None:
    _add(store)
    _plan(store, T1, T2)
    assert store.claim_fire("A", 600, _alive("A"))["fire_time"] == T1
    # A died: B relaunches T1 (the claim counts the attempts)
    claim = store.claim_fire("B", 600, _alive("B"))
    assert claim["fire_time"] == T1 and claim["claims"] == 2
    # B made the run, then died before marking it: C only records the run
    run_id = _run(store, T1, "succeeded")
    claim = store.claim_fire("C", 600, _alive("C"))
    assert claim is not None and claim["fire_time"] == T2
    assert store.schedule_fires()[0]["run_id"] == run_id and _states(store)[T1] == "launched"


def test_an_unknown_owner_keeps_its_claim_until_its_lease_expires(store: RunStore) -> None:
    _add(store)
    _plan(store, T1)
    assert store.claim_fire("other-host", 600, lambda _o: None) is not None
    assert store.claim_fire("me", 600, lambda _o: None) is None
    _add(store, "t")
    _plan(store, T2, name="t")
    assert store.claim_fire("other-host", -1, lambda _o: None)["schedule"]["name"] == "t"  # already expired
    assert store.claim_fire("me", 600, lambda _o: None)["schedule"]["name"] == "t"


def test_a_launch_that_keeps_crashing_is_given_up(store: RunStore) -> None:
    _add(store)
    _plan(store, T1)
    for _ in range(MAX_CLAIMS):
        assert store.claim_fire("A", 600, _alive()) is not None
    assert store.claim_fire("A", 600, _alive()) is None
    fire = store.schedule_fires()[0]
    assert fire["state"] == "failed" and "interrupted 3 times" in fire["reason"]


@pytest.mark.parametrize("overlap", ["skip", "queue"])
def test_max_active_one_never_starts_a_second_run(store: RunStore, overlap: str) -> None:
    _add(store, overlap=overlap)
    _plan(store, T1, T2)  # one pass catching up two fire times: they run one after the other
    assert store.claim_fire("A", 600, _alive("A"))["fire_time"] == T1
    assert store.claim_fire("A", 600, _alive("A")) is None  # T1 is claimed, not launched yet: it counts
    _run(store, T1)
    store.mark_fire("s", T1, "launched")
    assert store.claim_fire("A", 600, _alive("A")) is None
    _plan(store, T3)  # a later pass while T1 still runs
    assert store.claim_fire("A", 600, _alive("A")) is None
    assert _states(store)[T3] == ("skipped" if overlap == "skip" else "pending")
    assert _states(store)[T2] == "pending"
    run_id = store.list_runs(schedule="s")[0]["run_id"]
    store.set_run_status(run_id, "succeeded")
    assert store.claim_fire("A", 600, _alive("A"))["fire_time"] == T2
    if overlap == "skip":
        assert "earlier run(s) of this schedule still active" in store.schedule_fires()[2]["reason"]


def test_pause_resume_remove_and_names(store: RunStore) -> None:
    _add(store)
    with pytest.raises(ScheduleExists, match="already exists"):
        _add(store)
    store.set_schedule_paused("s", True)
    assert _plan(store, T1) == [] and store.get_schedule("s")["paused"]
    store.set_schedule_paused("s", False)
    assert store.get_schedule("s")["cursor"] is not None  # time spent paused is not caught up
    _plan(store, datetime(2999, 1, 1))
    run_id = _run(store, datetime(2999, 1, 1), "failed")
    assert store.list_schedules()[0]["last_run"] == {"run_id": run_id, "status": "failed",
                                                     "scheduled_time": "2999-01-01T00:00:00+00:00"}
    store.remove_schedule("s")
    assert store.list_schedules() == [] and store.schedule_fires() == []
    assert store.get_run(run_id)["schedule"] == "s"
    for call in (lambda: store.get_schedule("s"), lambda: store.remove_schedule("s"),
                 lambda: store.set_schedule_paused("s", True)):
        with pytest.raises(ScheduleNotFound, match="no schedule named `s`"):
            call()


def test_notifications_are_recorded(store: RunStore) -> None:
    store.record_notification("r1", "failed", "http://127.0.0.1:9/…", "failed", 3, "HTTP 500 boom")
    assert store.notifications("r1") == [{"event": "failed", "target": "http://127.0.0.1:9/…", "status": "failed",
                                          "attempts": 3, "error": "HTTP 500 boom",
                                          "created_at": store.notifications("r1")[0]["created_at"]}]


def test_a_run_whose_driver_died_does_not_block_the_schedule(store: RunStore) -> None:
    from sqlalchemy import update

    from flyte_lab.scheduler.claims import driver_alive
    from flyte_lab.store.schema import Run

    _add(store)
    _plan(store, T1)
    store.claim_fire("A", 600, _alive("A"), driver_alive)
    run_id = _run(store, T1)  # running, driven by this (live) process
    store.mark_fire("s", T1, "launched", run_id=run_id)
    _plan(store, T2)
    assert store.claim_fire("A", 600, _alive("A"), driver_alive) is None
    assert _states(store)[T2] == "skipped"
    _plan(store, T3)
    with store._write() as conn:  # the driver is gone: a pid that cannot exist
        conn.execute(update(Run).where(Run.run_id == run_id).values(driver_pid=2**22 + 12345))
    assert store.claim_fire("A", 600, _alive("A"), driver_alive)["fire_time"] == T3
