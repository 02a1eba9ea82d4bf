"""The run store on a real PostgreSQL server (started by this module, on 127.0.0.1): the same Alembic
migrations, the store's own checks re-run unchanged, the races across processes, and a real `flyte-lab run`.

The server is skipped, with the reason, where PostgreSQL's binaries or psycopg are missing.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from flyte_lab.errors import LeaseLostError, RunBusy
from flyte_lab.store import RunStore
from flyte_lab.store.database import _PG_WRITE_LOCK, head_revision
from flyte_lab.store.leases import driver_identity
from tests.conftest import CLI, cli_env
from tests.pg_server import PostgresServer, Unavailable
from tests.process_helpers import write_notebook

# The store's own checks, dialect-agnostic, run here against PostgreSQL (the `url` and `store`
# fixtures below replace their SQLite ones).
from tests.test_run_store import (  # noqa: F401
    _new_run,
    test_ambiguous_prefix_names_the_candidates,
    test_an_expired_cache_lock_is_taken_over,
    test_cache_lock_contention_between_two_stores,
    test_cache_lock_has_one_winner_across_processes,
    test_cache_put_and_get,
    test_full_life_cycle_matches_design_shape,
    test_list_runs_newest_first_with_filters,
    test_list_runs_pages_on_the_server_with_offset_and_count,
    test_new_run_is_queued_with_queued_tasks,
    test_outputs_keep_json_values_and_fall_back_to_previews,
    test_reopening_an_up_to_date_store_keeps_its_data,
    test_resume_reopens_a_failed_run_and_task,
    test_run_ids_sort_by_time_and_prefixes_resolve,
    test_schema_matches_declarative_models,
    test_status_writes_are_idempotent,
    test_unknown_run_raises_run_not_found_with_a_helpful_message,
    test_unknown_task_and_bad_status_are_refused,
)
from tests.test_run_store import test_a_second_run_for_the_same_fire_time_is_refused as test_scheduled_run_is_unique
from tests.test_sched_store import (  # noqa: F401
    test_a_dead_claimants_fire_time_is_claimed_again_and_a_made_run_is_not_remade,
    test_a_fire_time_is_planned_once_and_claimed_by_one_owner,
    test_max_active_one_never_starts_a_second_run,
)

CTX = mp.get_context("fork")
PROCESS_TIMEOUT_S = 60

__all__ = ["test_scheduled_run_is_unique"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer.start()
    except Unavailable as why:
        pytest.skip(f"no PostgreSQL server for the team-store tests: {why}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    return postgres.fresh_database()


@pytest.fixture
def store(url: str) -> Iterator[RunStore]:
    s = RunStore(url)
    yield s
    s.close()


# -- migrations -------------------------------------------------------------------


def test_the_alembic_migrations_build_the_schema_on_postgresql(store: RunStore) -> None:
    assert store._engine.dialect.name == "postgresql"
    with store._engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
    tables = set(inspect(store._engine).get_table_names())
    assert {"runs", "tasks", "attempts", "outputs", "cache_entries", "cache_locks"} <= tables


def _open_worker(url: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=PROCESS_TIMEOUT_S)
        with RunStore(url) as store:
            run_id = _new_run(store)
        results.put(("ok", run_id))
    except BaseException as err:  # reported to the parent, which asserts
        results.put(("error", repr(err)))


def test_processes_migrating_a_fresh_database_at_once_all_succeed(url: str) -> None:
    n = 4
    barrier, results = CTX.Barrier(n), CTX.Queue()
    procs = [CTX.Process(target=_open_worker, args=(url, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    outcome = [results.get(timeout=PROCESS_TIMEOUT_S) for _ in procs]
    for p in procs:
        p.join(PROCESS_TIMEOUT_S)
    assert [kind for kind, _ in outcome] == ["ok"] * n, outcome
    with RunStore(url) as store:
        assert len(store.list_runs()) == n
        with store._engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


# -- create / claim / fence ---------------------------------------------------------------------


def test_one_live_driver_per_run_and_stale_writes_are_fenced(store: RunStore) -> None:
    run_id = store.create_run("nb.ipynb", {}, {}, [{"name": "t"}], "local", notebook_hash="x")
    me = driver_identity()
    fence = store.claim_run(run_id, me, 60)
    store.set_task_status(run_id, "t", "running", fence=fence)
    with pytest.raises(RunBusy, match=r"still being driven by pid \d+ on host"):
        store.claim_run(run_id, me + "-other", 60)
    with store._write() as conn:  # the lease lapses (the test chooses when)
        conn.execute(text("UPDATE runs SET lease_expires_at = '2000-01-01 00:00:00'"))
    newer = store.claim_run(run_id, me + "-other", 60)
    assert newer == fence + 1
    store.set_task_status(run_id, "t", "queued", fence=newer)
    for write in (lambda: store.set_task_status(run_id, "t", "failed", fence=fence),
                  lambda: store.start_attempt(run_id, "t", None, {}, fence=fence),
                  lambda: store.set_run_status(run_id, "failed", fence=fence),
                  lambda: store.renew_run(run_id, fence, 60)):
        with pytest.raises(LeaseLostError):
            write()
    task = store.get_run(run_id)["tasks"]["t"]
    assert (task["status"], task["attempts"]) == ("queued", 0)


def _claim_worker(url: str, run_id: str, barrier: Any, owner: str, results: Any) -> None:
    try:
        with RunStore(url) as store:
            barrier.wait(timeout=PROCESS_TIMEOUT_S)
            try:
                results.put((owner, store.claim_run(run_id, owner, 60)))
            except RunBusy:
                results.put((owner, None))
    except BaseException as err:
        results.put((owner, repr(err)))


def test_two_processes_claiming_one_run_get_one_lease(store: RunStore, url: str) -> None:
    run_id = _new_run(store)
    barrier, results = CTX.Barrier(2), CTX.Queue()
    # owners on another host: alive until their lease lapses, whatever this machine's pids say
    procs = [CTX.Process(target=_claim_worker, args=(url, run_id, barrier, f"far-host:{i}:1", results))
             for i in range(2)]
    for p in procs:
        p.start()
    outcome = dict(results.get(timeout=PROCESS_TIMEOUT_S) for _ in procs)
    for p in procs:
        p.join(PROCESS_TIMEOUT_S)
    assert sorted(outcome.values(), key=str) == [1, None], outcome


# -- cache claims raced by processes -------------------------------------------------------------


def _cache_worker(url: str, barrier: Any, keys: list[str], owner: str, results: Any) -> None:
    try:
        with RunStore(url) as store:
            barrier.wait(timeout=PROCESS_TIMEOUT_S)
            seen = {}
            for key in keys:
                state, _ = store.cache_claim(key, owner, "t", ttl_s=60)
                if state == "locked":  # compute, then publish and release in one transaction
                    with store._write() as conn:
                        store.cache_put_in(conn, key, "t", {"by": owner}, None)
                        store.cache_unlock_in(conn, key, owner)
                seen[key] = state
        results.put((owner, seen))
    except BaseException as err:
        results.put((owner, repr(err)))


def test_two_processes_racing_for_cache_keys_compute_each_once(url: str) -> None:
    RunStore(url).close()
    keys = [f"key-{i}" for i in range(40)]
    barrier, results = CTX.Barrier(2), CTX.Queue()
    procs = [CTX.Process(target=_cache_worker, args=(url, barrier, keys, f"run-{i}", results)) for i in range(2)]
    for p in procs:
        p.start()
    outcome = dict(results.get(timeout=PROCESS_TIMEOUT_S) for _ in procs)
    for p in procs:
        p.join(PROCESS_TIMEOUT_S)
        assert p.exitcode == 0
    assert all(isinstance(seen, dict) for seen in outcome.values()), outcome
    with RunStore(url) as store:
        for key in keys:
            states = sorted(seen[key] for seen in outcome.values())
            # exactly one computed it; the other found it done, or found it being computed
            assert states in (["hit", "locked"], ["busy", "locked"]), (key, states)
            winner = next(owner for owner, seen in outcome.items() if seen[key] == "locked")
            assert store.cache_get(key)["outputs"] == {"by": winner}


def _write_loop(url: str, run_id: str, progressed: Any) -> None:
    store = RunStore(url)
    i = 0
    while True:  # until killed
        task = ["make_data", "fit", "report"][i % 3]
        number = store.start_attempt(run_id, task, f"worker-{i}", {"CPU": 1})
        store.finish_attempt(run_id, task, number, "succeeded")
        i += 1
        if i == 20:
            progressed.set()


def test_a_writer_killed_mid_transaction_leaves_a_consistent_store_and_no_lock(url: str) -> None:
    with RunStore(url) as store:
        run_id = _new_run(store)
    progressed = CTX.Event()
    proc = CTX.Process(target=_write_loop, args=(url, run_id, progressed))
    proc.start()
    try:
        assert progressed.wait(PROCESS_TIMEOUT_S), "the writer made no progress"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(PROCESS_TIMEOUT_S)
    with RunStore(url) as store:
        # the write lock died with the killed session: a writer gets it without waiting long
        with store._engine.connect() as conn, conn.begin():
            conn.execute(text("SET LOCAL lock_timeout = '20s'"))
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_WRITE_LOCK})
        store.cache_put("after-kill", "t", {}, run_id)
        run = store.get_run(run_id)
        for name, task in run["tasks"].items():
            numbers = [a["number"] for a in run["attempts_detail"].get(name, [])]
            assert numbers == list(range(1, task["attempts"] + 1))


# -- a real run -------------------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_flyte_lab_run_records_into_postgresql(url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    nb = write_notebook(
        tmp_path / "pg.ipynb", "n = 4",
        "%%flyte_task make(n: int) -> numbers: list[int]\nnumbers = list(range(n))",
        "%%flyte_task total(numbers: list[int]) -> result: int\nresult = sum(numbers)",
    )
    env = cli_env(home)
    env["FLYTE_LAB_DB_URL"] = url
    env.pop("FLYTE_LAB_ARTIFACTS", None)
    ran = subprocess.run([*CLI, "run", str(nb), "--cluster", "local", "--workers", "1", "--json"], env=env,
                         capture_output=True, text=True, timeout=150, stdin=subprocess.DEVNULL)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    run = json.loads(ran.stdout)
    assert run["status"] == "succeeded"
    assert not (home / "store.db").exists()  # the run went to PostgreSQL, not a local SQLite file
    with RunStore(url) as store:
        stored = store.get_run(run["run_id"])
    assert stored["status"] == "succeeded"
    assert {name: t["status"] for name, t in stored["tasks"].items()} == {"make": "succeeded", "total": "succeeded"}
    outputs = subprocess.run([*CLI, "outputs", run["run_id"], "--json"], env=env, capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
    assert outputs.returncode == 0, outputs.stderr
    assert json.loads(outputs.stdout)["total"]["result"] == 6
