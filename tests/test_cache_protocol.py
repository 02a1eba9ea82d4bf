"""Two identical `--cache` runs racing for one key: the state machine's protocol over a real SQLite store.

The test chooses every interleaving (hypothesis stateful): which run's claim reaches the store
first, when a holder finishes, fails or crashes (its lease then lapses), when clocks tick. No
sleeps, no threads: each step is one store transaction, as in the driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from flyte_lab.engine import state_machine as sm
from flyte_lab.engine.attempt_records import AttemptFailed, AttemptSucceeded, ErrorRecord
from flyte_lab.errors import LeaseLostError, RunBusy
from flyte_lab.statuses import CancelSource
from flyte_lab.store import RunStore
from tests.pg_server import engine_on_postgres

KEY = "k" * 64
BOOM = ErrorRecord.from_cell_error("ValueError", "boom", cell=1, line=1, traceback="")
OUT = {"v": {"type": "int", "uri": "memory://x", "codec": "json", "content_hash": "h", "preview": "1", "value": 1}}


class Side:
    """One run: its state machine and the few instructions this protocol needs, carried out for real."""

    def __init__(self, store: RunStore, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self.machine = sm.RunStateMachine([sm.TaskPlan("t", cache=True)], lease_ttl_s=30, cache_recheck_s=0.5)
        self.claims = 0  # CheckCache instructions not yet carried out
        self.computing: int | None = None  # attempt in flight
        self.computed = 0  # bodies that finished successfully
        self.crashed = False
        self.clock = 0.0

    def feed(self, event: Any) -> None:
        for ins in self.machine.handle(event):
            if isinstance(ins, sm.CheckCache):
                self.claims += 1
            elif isinstance(ins, sm.StartAttempt):
                self.store.start_attempt(self.run_id, "t", None, {}, number=ins.attempt)
            elif isinstance(ins, sm.Submit):
                self.computing = ins.attempt
            elif isinstance(ins, sm.FinishAttempt) and isinstance(ins.result, AttemptSucceeded):
                self.store.commit_success(self.run_id, "t", ins.attempt, ins.result.outputs, cache_key=KEY,
                                          cache_entry=ins.cache)
            elif isinstance(ins, sm.FinishAttempt):
                self.store.finish_attempt(self.run_id, "t", ins.attempt, "failed", kind=ins.result.fault,
                                          error=ins.result.error.to_dict())
            elif isinstance(ins, sm.RecordCacheHit):
                self.store.save_outputs(self.run_id, "t", ins.outputs)
                self.store.set_task_status(self.run_id, "t", "cached", cache_key=KEY)
            elif isinstance(ins, sm.MarkTask):
                self.store.set_task_status(self.run_id, "t", ins.status, error=ins.error and ins.error.to_dict())
            elif isinstance(ins, sm.ReleaseCacheLock):
                self.store.cache_unlock(KEY, self.run_id)
            elif isinstance(ins, sm.RenewLeases):
                self.store.cache_renew([KEY] if ins.cache_tasks else [], self.run_id, 30)

    def claim(self) -> None:
        self.claims -= 1
        state, found = self.store.cache_claim(KEY, self.run_id, "t", 30)
        if state == "hit":
            self.feed(sm.TaskCacheHit("t", found["outputs"]))
        elif state == "locked":
            self.feed(sm.CacheLocked("t"))
        else:
            self.feed(sm.CacheBusy("t", found))


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    # FLYTE_LAB_TEST_DB=postgresql: every example shares one database, its cache tables emptied between them
    TwoCachedRuns.shared_url = (request.getfixturevalue("engine_postgres").fresh_database()
                                if engine_on_postgres() else None)
    return tmp_path_factory.mktemp("cache-protocol")


def _url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh store: SQLite in tmp_path, or a new database of the session's PostgreSQL server."""
    if engine_on_postgres():
        return str(request.getfixturevalue("engine_postgres").fresh_database())
    return f"sqlite:///{tmp_path}/s.db"


class TwoCachedRuns(RuleBasedStateMachine):
    store_dir: Path
    shared_url: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.db = self.store_dir / f"store-{id(self)}.db"
        self.store = RunStore(self.shared_url or f"sqlite:///{self.db}")
        self.sides = []
        for _ in range(2):
            run_id = self.store.create_run("nb.ipynb", {}, {}, [{"name": "t"}], "local", notebook_hash="x")
            side = Side(self.store, run_id)
            side.feed(sm.RunStarted())
            self.sides.append(side)

    def teardown(self) -> None:
        if self.shared_url:  # runs have ids of their own; the one cache key must start free
            with self.store._engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM cache_locks")
                conn.exec_driver_sql("DELETE FROM cache_entries")
        self.store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.db}{suffix}").unlink(missing_ok=True)

    def live(self, i: int) -> bool:
        return not self.sides[i].crashed and not self.sides[i].machine.done

    @rule(i=st.integers(0, 1))
    def deliver_claim(self, i: int) -> None:
        side = self.sides[i]
        if self.live(i) and side.claims > 0:
            side.claim()

    @rule(i=st.integers(0, 1), seconds=st.sampled_from([0.3, 1.0, 11.0]))
    def tick(self, i: int, seconds: float) -> None:
        side = self.sides[i]
        if self.live(i):
            side.clock += seconds
            side.feed(sm.Tick(side.clock))

    @rule(i=st.integers(0, 1), ok=st.booleans())
    def body_finishes(self, i: int, ok: bool) -> None:
        side = self.sides[i]
        if self.live(i) and side.computing is not None:
            attempt, side.computing = side.computing, None
            side.feed(sm.TaskStarted("t", attempt))
            if ok:
                side.computed += 1
                side.feed(sm.TaskSucceeded("t", attempt, AttemptSucceeded(outputs=OUT)))
            else:
                side.feed(sm.TaskFailed("t", attempt, AttemptFailed(kind="user", error=BOOM)))

    @precondition(lambda self: not any(s.crashed for s in self.sides))
    @rule(i=st.integers(0, 1))
    def driver_crashes_and_its_lease_lapses(self, i: int) -> None:
        # the interleaving the test chooses: the crashed run's lock lapses right now
        self.sides[i].crashed = True
        self.sides[i].computing = None
        from sqlalchemy import text

        with self.store._write() as conn:
            conn.execute(text("UPDATE cache_locks SET expires_at = '2000-01-01 00:00:00' WHERE owner = :o"),
                         {"o": self.sides[i].run_id})

    @invariant()
    def never_two_bodies_at_once(self) -> None:
        running = [s for s in self.sides if not s.crashed and s.computing is not None]
        assert len(running) <= 1, "two runs compute the same cache key at the same time"

    @invariant()
    def computed_at_most_once_without_a_crash(self) -> None:
        if not any(s.crashed for s in self.sides):
            assert sum(s.computed for s in self.sides) <= 1

    @invariant()
    def a_committed_key_is_never_computed_again(self) -> None:
        if self.store.cache_get(KEY) is not None:
            for s in self.sides:
                if s.computing is not None and not s.crashed:
                    # it may only be the run that committed (already done) or one that locked before
                    assert s.machine.task_status["t"] == "queued"
                    assert s.computed == 0 or s.machine.done

    def drain(self) -> None:
        """Run every live side to its end; used by the final check."""
        for _ in range(50):
            progressed = False
            for i, side in enumerate(self.sides):
                if not self.live(i):
                    continue
                if side.claims:
                    side.claim()
                    progressed = True
                elif side.computing is not None:
                    attempt, side.computing = side.computing, None
                    side.feed(sm.TaskStarted("t", attempt))
                    side.computed += 1
                    side.feed(sm.TaskSucceeded("t", attempt, AttemptSucceeded(outputs=OUT)))
                    progressed = True
                else:
                    side.clock += 1.0
                    side.feed(sm.Tick(side.clock))
                    progressed = True
            if not progressed:
                return


TwoCachedRuns.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None,
                                          suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_two_cached_runs_compute_once(store_dir: Path) -> None:
    TwoCachedRuns.store_dir = store_dir
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(TwoCachedRuns, settings=TwoCachedRuns.TestCase.settings)


def test_every_interleaving_ends_with_every_live_run_done(store_dir: Path) -> None:
    """Drain after random prefixes: each live run finishes, and the key is computed once unless a holder
    crashed (then at most twice: the crashed holder's body and the takeover's)."""
    TwoCachedRuns.store_dir = store_dir

    class Drained(TwoCachedRuns):
        def teardown(self) -> None:
            failed_before = any(s.machine.task_status["t"] == "failed" for s in self.sides)
            self.drain()
            for i, side in enumerate(self.sides):
                if not side.crashed:
                    assert side.machine.done, f"run {i} never finished (waiting on {side.machine.waiting_on_cache})"
            if not any(s.crashed for s in self.sides) and not failed_before:
                assert sum(s.computed for s in self.sides) == 1
            super().teardown()

    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(Drained, settings=TwoCachedRuns.TestCase.settings)


# --- run ownership: one live driver, fenced writes ---------------------------------------------------------


def test_one_live_driver_per_run_and_stale_writes_are_refused(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from flyte_lab.store.leases import driver_identity

    with RunStore(_url(tmp_path, request)) as store:
        run_id = store.create_run("nb.ipynb", {}, {}, [{"name": "t"}], "local", notebook_hash="x")
        me = driver_identity()
        fence = store.claim_run(run_id, me, 60)
        store.set_task_status(run_id, "t", "running", fence=fence)
        # another live driver (this very process, named differently) is refused while the lease holds
        with pytest.raises(RunBusy, match=r"still being driven by pid \d+ on host"):
            store.claim_run(run_id, me + "-other", 60)
        # the lease lapses (the test chooses when): a new driver takes over with a new token
        from sqlalchemy import text

        with store._write() as conn:
            conn.execute(text("UPDATE runs SET lease_expires_at = '2000-01-01 00:00:00'"))
        newer = store.claim_run(run_id, me + "-other", 60)
        assert newer == fence + 1
        store.set_task_status(run_id, "t", "queued", fence=newer)
        # the stale driver's every write is refused and changes nothing
        for write in (lambda: store.set_task_status(run_id, "t", "failed", fence=fence),
                      lambda: store.start_attempt(run_id, "t", None, {}, fence=fence),
                      lambda: store.commit_success(run_id, "t", None, OUT, fence=fence),
                      lambda: store.set_run_status(run_id, "failed", fence=fence),
                      lambda: store.renew_run(run_id, fence, 60)):
            with pytest.raises(LeaseLostError):
                write()
        assert store.get_run(run_id)["tasks"]["t"]["status"] == "queued"
        assert store.get_run(run_id)["tasks"]["t"]["attempts"] == 0


def test_a_dead_drivers_lease_on_this_host_is_taken_over_at_once(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    import socket
    import subprocess
    import sys

    with RunStore(_url(tmp_path, request)) as store:
        run_id = store.create_run("nb.ipynb", {}, {}, [{"name": "t"}], "local", notebook_hash="x")
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        store.claim_run(run_id, f"{socket.gethostname()}:{proc.pid}:0", 3600)
        assert store.claim_run(run_id, "me:1:1", 60) == 2  # its process is gone: no need to wait an hour


def test_a_cancel_request_says_who_asked_until_the_next_driver_claims_the_run(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from flyte_lab.store.leases import driver_identity

    with RunStore(_url(tmp_path, request)) as store:
        run_id = store.create_run("nb.ipynb", {}, {}, [{"name": "t"}], "local", notebook_hash="x")
        fence = store.claim_run(run_id, driver_identity(), 60)
        assert store.cancel_requested(run_id) is None and store.renew_run(run_id, fence, 60) is None
        assert store.request_cancel(run_id, CancelSource.SIDEBAR) == (run_id, "requested")  # its driver is live
        # the driver reads who asked (on a tick, or with its lease), and records it with the run's end
        assert store.cancel_requested(run_id) == store.renew_run(run_id, fence, 60) == CancelSource.SIDEBAR
        store.set_run_status(run_id, "cancelled", cancelled_by=CancelSource.SIDEBAR, fence=fence)
        assert store.get_run(run_id)["cancelled_by"] == "sidebar"
        assert store.list_runs()[0]["cancelled_by"] == "sidebar"  # `runs --json`
        store.release_run(run_id, fence)
        store.claim_run(run_id, driver_identity(), 60)  # a resume: the old request is no longer pending
        assert store.cancel_requested(run_id) is None and store.get_run(run_id)["cancelled_by"] is None


def test_cancel_of_a_run_without_a_live_driver_is_recorded_directly(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with RunStore(_url(tmp_path, request)) as store:
        run_id = store.create_run("nb.ipynb", {}, {}, [{"name": "a"}, {"name": "b"}], "local", notebook_hash="x")
        store.set_task_status(run_id, "a", "running")
        store.start_attempt(run_id, "a", None, {})  # its driver died during it
        assert store.cache_claim(KEY, run_id, "a", 3600)[0] == "locked"
        assert store.request_cancel(run_id, CancelSource.DASHBOARD) == (run_id, "recorded")
        run = store.get_run(run_id)
        assert (run["status"], run["cancelled_by"]) == ("cancelled", "dashboard")
        assert {n: t["status"] for n, t in run["tasks"].items()} == {"a": "cancelled", "b": "skipped"}
        said = {"type": "Cancelled", "message": "cancelled from the dashboard"}  # who, and no cell or line
        assert run["tasks"]["a"]["error"] == said
        # the attempt its dead driver left open ends with the cancel: no timeline draws it running on
        [attempt] = run["attempts_detail"]["a"]
        assert (attempt["status"], attempt["kind"], attempt["error"]) == ("cancelled", None, said)
        assert attempt["finished_at"] == run["finished_at"]
        assert store.cache_claim(KEY, "another-run", "a", 60)[0] == "locked"  # its lock went with it
        assert store.request_cancel(run_id, CancelSource.COMMAND) == (run_id, "cancelled")  # again: already final
        assert store.get_run(run_id)["cancelled_by"] == "dashboard"  # the first cancel's
