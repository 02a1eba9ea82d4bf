"""The run store against real SQLite files: schema, life cycle, concurrency, crashes."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from flyte_lab.errors import RunNotFound, ScheduledRunExists, UserInputError
from flyte_lab.notebook_hash import hash_notebook
from flyte_lab.store import RunStore
from flyte_lab.store.database import head_revision

# fork: children inherit the imported package, and start in milliseconds
CTX = mp.get_context("fork")
PROCESS_TIMEOUT_S = 60

SHOW_KEYS = {"run_id", "notebook", "status", "params", "created_at", "started_at", "finished_at", "tasks"}
EXTRA_KEYS = {"schedule", "scheduled_time", "cluster", "error", "cancelled_by", "attempts_detail", "scale_events",
              "notes", "idle_s", "partial"}
TASK_KEYS = {
    "status",
    "attempts",
    "cell",
    "duration_s",
    "resources",
    "output_notebook",
    "outputs",
    "error",
    "usage",
    "reused_from",
}
RUNS_KEYS = {"run_id", "notebook", "status", "schedule", "scheduled_time", "created_at", "finished_at", "cancelled_by",
             "idle_s"}
ATTEMPT_KEYS = {"number", "status", "kind", "worker", "started_at", "finished_at", "error", "output_notebook",
                "usage"}

TASKS = [
    {"name": "make_data", "cell": 4, "resources": {}},
    {"name": "fit", "cell": 7, "resources": {"cpu": 2, "mem": "4Gi"}},
    {"name": "report", "cell": 9, "resources": {}},
]
GRAPH = {
    "tasks": [{"name": t["name"], "cell": t["cell"]} for t in TASKS],
    "edges": [["make_data", "fit", "raw"]],
}
ERROR = {
    "type": "ValueError",
    "message": "bad lr",
    "cell": 7,
    "line": 3,
    "traceback": "ValueError: bad lr",
}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def store(url: str):
    s = RunStore(url)
    yield s
    s.close()


def _new_run(store: RunStore, notebook: str = "pipeline.ipynb", **kw: Any) -> str:
    return store.create_run(notebook, {"n": 400, "seed": 11}, GRAPH, TASKS, "local", **kw)


def _parse_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), value
    return parsed


# -- schema and connection settings ---------------------------------------------


def test_migration_creates_schema_with_alembic_version(store: RunStore, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "store.db")
    try:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert versions == [(head_revision(),)]
    assert head_revision() == "0009"
    assert {"runs", "tasks", "attempts", "outputs", "cache_entries", "cache_locks"} <= tables


def test_the_recorded_head_schema_is_what_the_migrations_make(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import create_engine

    from flyte_lab.store.database import HEAD_SQLITE_SQL, alembic_config, head_schema_sql

    migrated = create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    with migrated.begin() as conn:
        command.upgrade(alembic_config(connection=conn), "head")
    try:
        assert HEAD_SQLITE_SQL.read_text() == head_schema_sql(migrated), (
            "the migrations changed: regenerate the snapshot with "
            "python -c 'from flyte_lab.store.database import write_head_schema; write_head_schema()'")
    finally:
        migrated.dispose()


def test_a_new_sqlite_store_gets_the_head_schema_without_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    # a new store made by a fresh process: the snapshot's tables, stamped at the head, alembic never imported
    new_url = f"sqlite:///{tmp_path / 'new.db'}"
    code = (f"import sys\nfrom flyte_lab.store import RunStore\nRunStore({new_url!r}).close()\n"
            "print('alembic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    from sqlalchemy import create_engine

    from flyte_lab.store.database import HEAD_SQLITE_SQL, head_schema_sql

    made = create_engine(new_url)
    try:
        assert head_schema_sql(made) == HEAD_SQLITE_SQL.read_text()
        with made.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
    finally:
        made.dispose()
    store = RunStore(new_url)  # and it works as a store
    try:
        run_id = _new_run(store)
        assert store.get_run(run_id)["status"] == "queued"
    finally:
        store.close()


def test_schema_matches_declarative_models(store: RunStore) -> None:
    from flyte_lab.store.schema import Base

    insp = inspect(store._engine)
    for table in Base.metadata.sorted_tables:
        db_cols = {c["name"]: c["nullable"] for c in insp.get_columns(table.name)}
        model_cols = {c.name: c.nullable for c in table.columns}
        assert db_cols == model_cols, table.name


def test_reopening_an_up_to_date_store_keeps_its_data(url: str) -> None:
    with RunStore(url) as first:
        run_id = _new_run(first)
    with RunStore(url) as second:
        assert second.get_run(run_id)["status"] == "queued"


def test_sqlite_is_in_wal_mode_with_the_documented_pragmas(store: RunStore, tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "store.db")
    try:
        # journal_mode=WAL is persistent in the file, so any connection sees it
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        raw.close()
    with store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_from_env_uses_flyte_lab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home" / "nested"
    monkeypatch.setenv("FLYTE_LAB_HOME", str(home))
    monkeypatch.delenv("FLYTE_LAB_DB_URL", raising=False)
    with RunStore.from_env() as s:
        assert s.home == home
        assert (home / "store.db").exists()
        assert s.url == f"sqlite:///{home / 'store.db'}"


def test_from_env_db_url_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "elsewhere.db"
    monkeypatch.setenv("FLYTE_LAB_DB_URL", f"sqlite:///{other}")
    with RunStore.from_env(home=tmp_path / "h") as s:
        assert s.home == tmp_path / "h"
        assert (tmp_path / "h").is_dir()
        _new_run(s)
    assert other.exists()
    assert not (tmp_path / "h" / "store.db").exists()


def test_in_memory_store_works() -> None:
    with RunStore("sqlite://") as s:
        run_id = _new_run(s)
        assert s.get_run(run_id)["tasks"]["fit"]["status"] == "queued"


# -- life cycle and the show --json shape -----------------------------------------


def test_new_run_is_queued_with_queued_tasks(store: RunStore) -> None:
    run_id = _new_run(store)
    run = store.get_run(run_id)
    assert set(run) == SHOW_KEYS | EXTRA_KEYS
    assert run["status"] == "queued"
    assert run["params"] == {"n": 400, "seed": 11}
    assert run["started_at"] is None and run["finished_at"] is None
    _parse_iso(run["created_at"])
    assert list(run["tasks"]) == ["make_data", "fit", "report"]  # graph order
    for task in run["tasks"].values():
        assert set(task) == TASK_KEYS
        assert task["status"] == "queued"
        assert task["attempts"] == 0
        assert task["outputs"] == {} and task["error"] is None
    assert run["tasks"]["fit"]["resources"] == {"cpu": 2, "mem": "4Gi"}
    assert run["attempts_detail"] == {"make_data": [], "fit": [], "report": []}
    assert store.get_graph(run_id) == GRAPH


def test_full_life_cycle_matches_design_shape(store: RunStore) -> None:
    run_id = _new_run(store)
    store.set_run_status(run_id, "running")

    store.set_task_status(run_id, "make_data", "cached", cache_key="k-make")
    store.set_task_status(run_id, "fit", "running")
    first = store.start_attempt(run_id, "fit", "tcp://10.0.0.5:4000", {"CPU": 2, "MEMORY": 4e9})
    store.finish_attempt(run_id, "fit", first, "failed", kind="infra", error={"type": "KilledWorker"})
    second = store.start_attempt(run_id, "fit", "tcp://10.0.0.6:4000", {"CPU": 2, "MEMORY": 4e9})
    store.finish_attempt(run_id, "fit", second, "succeeded", output_notebook="/tmp/fit-2.ipynb")
    store.save_outputs(
        run_id,
        "fit",
        {
            "r2": {
                "type": "float",
                "uri": "file:///a/r2",
                "codec": "json",
                "content_hash": "sha256:1",
                "preview": "0.93",
                "value": 0.93,
            },
            "coef": {
                "type": "list[float]",
                "uri": "file:///a/coef",
                "codec": "json",
                "content_hash": "sha256:2",
                "preview": "[0.1, 0.2]",
                "value": [0.1, 0.2],
            },
        },
    )
    store.set_task_status(run_id, "fit", "succeeded")
    store.set_task_status(run_id, "report", "running")
    third = store.start_attempt(run_id, "report", None, {})
    store.finish_attempt(run_id, "report", third, "failed", kind="user", error=ERROR)
    store.set_task_status(run_id, "report", "failed", error=ERROR, output_notebook="/tmp/report-1.ipynb")
    store.set_run_status(run_id, "failed", error={"message": "task `report` failed"})

    run = store.get_run(run_id)
    assert set(run) == SHOW_KEYS | EXTRA_KEYS
    assert run["status"] == "failed"
    assert run["error"] == {"message": "task `report` failed"}
    created, started, finished = (_parse_iso(run[k]) for k in ("created_at", "started_at", "finished_at"))
    assert created <= started <= finished

    fit = run["tasks"]["fit"]
    assert set(fit) == TASK_KEYS
    assert fit["status"] == "succeeded"
    assert fit["attempts"] == 2
    assert fit["cell"] == 7
    assert isinstance(fit["duration_s"], float) and fit["duration_s"] >= 0
    assert fit["output_notebook"] == "/tmp/fit-2.ipynb"
    assert fit["outputs"] == {
        "coef": {"type": "list[float]", "uri": "file:///a/coef", "preview": "[0.1, 0.2]"},
        "r2": {"type": "float", "uri": "file:///a/r2", "preview": "0.93"},
    }
    assert fit["error"] is None

    assert run["tasks"]["make_data"]["status"] == "cached"
    assert run["tasks"]["make_data"]["attempts"] == 0
    report = run["tasks"]["report"]
    assert report["status"] == "failed" and report["error"] == ERROR
    assert report["output_notebook"] == "/tmp/report-1.ipynb"

    fit_attempts = run["attempts_detail"]["fit"]
    assert [a["number"] for a in fit_attempts] == [1, 2]
    assert all(set(a) == ATTEMPT_KEYS for a in fit_attempts)
    assert fit_attempts[0]["status"] == "failed" and fit_attempts[0]["kind"] == "infra"
    assert fit_attempts[0]["worker"] == "tcp://10.0.0.5:4000"
    assert fit_attempts[0]["error"] == {"type": "KilledWorker"}
    assert fit_attempts[1]["status"] == "succeeded" and fit_attempts[1]["kind"] is None
    assert fit_attempts[1]["output_notebook"] == "/tmp/fit-2.ipynb"
    for a in fit_attempts:
        assert _parse_iso(a["started_at"]) <= _parse_iso(a["finished_at"])
    assert run["attempts_detail"]["report"][0]["kind"] == "user"
    assert run["attempts_detail"]["make_data"] == []

    tasks = store.run_tasks(run_id)
    assert tasks["fit"]["attempts"] == 2 and tasks["make_data"]["cache_key"] == "k-make"
    record = store.run_record(run_id)
    assert record["driver_pid"] == os.getpid() and record["cluster"] == "local"


def test_outputs_keep_json_values_and_fall_back_to_previews(store: RunStore) -> None:
    run_id = _new_run(store)
    store.save_outputs(
        run_id,
        "make_data",
        {
            "raw": {"type": "pd.DataFrame", "uri": "file:///a/raw", "codec": "parquet", "preview": "400x1"},
            "none_value": {"type": "None", "uri": None, "codec": "json", "preview": "None", "value": None},
        },
    )
    outs = store.get_outputs(run_id, "make_data")
    assert "value" not in outs["raw"]
    assert outs["raw"]["codec"] == "parquet"
    assert outs["none_value"]["value"] is None
    assert store.run_outputs(run_id) == {
        "make_data": {"none_value": None, "raw": "400x1"},
        "fit": {},
        "report": {},
    }
    # saving again replaces, it does not duplicate
    store.save_outputs(run_id, "make_data", {"raw": {"type": "pd.DataFrame", "uri": "u2", "preview": "p2"}})
    assert store.get_outputs(run_id, "make_data")["raw"]["uri"] == "u2"
    assert len(store.get_outputs(run_id, "make_data")) == 2


def test_unknown_task_and_bad_status_are_refused(store: RunStore) -> None:
    run_id = _new_run(store)
    with pytest.raises(UserInputError, match="has no task `nope`"):
        store.set_task_status(run_id, "nope", "running")
    with pytest.raises(UserInputError, match="has no task `nope`"):
        store.save_outputs(run_id, "nope", {"x": {"type": "int"}})
    with pytest.raises(UserInputError, match="no attempt 5"):
        store.finish_attempt(run_id, "fit", 5, "failed")
    with pytest.raises(RunNotFound):
        store.set_run_status("19990101-000000-000000", "running")
    with pytest.raises(ValueError, match="unknown run status"):
        store.set_run_status(run_id, "done")
    with pytest.raises(ValueError, match="unknown task status"):
        store.set_task_status(run_id, "fit", "done")
    assert store.get_run(run_id)["status"] == "queued"


def test_a_second_run_for_the_same_fire_time_is_refused(store: RunStore) -> None:
    fire = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
    first = _new_run(store, schedule="nightly", scheduled_time=fire)
    with pytest.raises(ScheduledRunExists) as info:
        _new_run(store, schedule="nightly", scheduled_time=fire.isoformat())
    assert info.value.run_id == first
    other = _new_run(store, schedule="nightly", scheduled_time=fire + timedelta(days=1))
    run = store.get_run(other)
    assert run["schedule"] == "nightly"
    assert run["scheduled_time"] == "2025-03-02T06:00:00+00:00"
    # runs without a schedule never clash
    _new_run(store)
    _new_run(store)


# -- idempotence ------------------------------------------------------------------


def test_status_writes_are_idempotent(store: RunStore) -> None:
    run_id = _new_run(store)
    store.set_run_status(run_id, "running")
    store.set_task_status(run_id, "fit", "running")
    before, tasks_before = store.get_run(run_id), store.run_tasks(run_id)

    store.set_run_status(run_id, "running")  # a retried write after a lost ack
    store.set_task_status(run_id, "fit", "running")
    assert store.get_run(run_id) == before
    assert store.run_tasks(run_id) == tasks_before
    assert tasks_before["fit"]["started_at"] is not None

    store.set_task_status(run_id, "fit", "succeeded")
    store.set_run_status(run_id, "succeeded")
    done = store.get_run(run_id)
    store.set_task_status(run_id, "fit", "succeeded")
    store.set_run_status(run_id, "succeeded")
    assert store.get_run(run_id) == done
    assert done["finished_at"] is not None
    assert done["tasks"]["fit"]["duration_s"] is not None


def test_resume_reopens_a_failed_run_and_task(store: RunStore) -> None:
    run_id = _new_run(store)
    store.set_run_status(run_id, "running")
    store.set_task_status(run_id, "fit", "running")
    store.set_task_status(run_id, "fit", "failed", error=ERROR)
    store.set_run_status(run_id, "failed")
    first_start = store.get_run(run_id)["started_at"]

    store.set_run_status(run_id, "running")
    store.set_task_status(run_id, "fit", "queued")
    run = store.get_run(run_id)
    assert run["status"] == "running" and run["finished_at"] is None
    assert run["started_at"] == first_start
    assert run["tasks"]["fit"]["status"] == "queued"
    assert run["tasks"]["fit"]["error"] is None and run["tasks"]["fit"]["duration_s"] is None


def test_a_resume_counts_no_time_the_run_sat_failed(store: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's duration is the sum of its active spans; a task a resume reran counts from its new start (a
    cache hit: no attempt of its own, no duration), not from its failed attempt's."""
    import flyte_lab.store.run_store as run_store_module
    from flyte_lab.presentation.formats import run_duration

    t0 = datetime(2026, 12, 3, 12, 0)  # naive UTC, as the store's clock gives it
    clock = [t0]
    monkeypatch.setattr(run_store_module, "now_utc", lambda: clock[0])
    run_id = _new_run(store)
    store.set_run_status(run_id, "running")
    store.set_task_status(run_id, "fit", "running")
    clock[0] = t0 + timedelta(seconds=5)
    store.set_task_status(run_id, "fit", "failed", error=ERROR)
    store.set_run_status(run_id, "failed")  # active 5 s, then it sits failed for two minutes
    clock[0] = t0 + timedelta(seconds=125)
    store.set_run_status(run_id, "running")  # resumed
    store.set_task_status(run_id, "fit", "queued")
    clock[0] = t0 + timedelta(seconds=128)
    assert run_duration(store.get_run(run_id), now=clock[0].replace(tzinfo=UTC)) == 8.0  # live: 5 s + 3 s, not 128 s
    store.set_task_status(run_id, "fit", "cached")
    clock[0] = t0 + timedelta(seconds=129)
    store.set_run_status(run_id, "succeeded")
    run = store.get_run(run_id)
    assert run["tasks"]["fit"]["duration_s"] is None  # not the 124 s since its failed attempt started
    assert run["idle_s"] == 120.0
    assert run_duration(run) == 9.0
    [summary] = store.list_runs()
    assert summary["idle_s"] == 120.0
    [listed] = store.run_summaries()
    assert run_duration(listed) == 9.0
    # resumed again (an edit after success): the second wait adds up
    clock[0] = t0 + timedelta(seconds=189)
    store.set_run_status(run_id, "running")
    store.set_task_status(run_id, "fit", "queued")
    store.set_task_status(run_id, "fit", "running")
    clock[0] = t0 + timedelta(seconds=191)
    store.set_task_status(run_id, "fit", "succeeded")
    store.set_run_status(run_id, "succeeded")
    run = store.get_run(run_id)
    assert (run["idle_s"], run_duration(run), run["tasks"]["fit"]["duration_s"]) == (180.0, 11.0, 2.0)


# -- lookups and listing ----------------------------------------------------------


def test_run_ids_sort_by_time_and_prefixes_resolve(store: RunStore) -> None:
    run_id = _new_run(store)
    date_part, time_part, hex_part = run_id.split("-")
    assert len(date_part) == 8 and len(time_part) == 6 and len(hex_part) == 6
    assert store.get_run(run_id[:-2])["run_id"] == run_id
    assert store.get_graph(run_id[:-1]) == GRAPH


def test_unknown_run_raises_run_not_found_with_a_helpful_message(store: RunStore, url: str) -> None:
    with pytest.raises(RunNotFound) as info:
        store.get_run("nope")
    assert str(info.value) == f"no run `nope` in the store at {url}; `flyte-lab runs` lists them"
    assert info.value.exit_code == 2
    with pytest.raises(RunNotFound):
        store.get_graph("nope")
    with pytest.raises(RunNotFound):
        store.run_tasks("")
    # LIKE wildcards in user input are literal
    _new_run(store)
    with pytest.raises(RunNotFound):
        store.get_run("%")
    with pytest.raises(RunNotFound):
        store.get_run("_")


def test_ambiguous_prefix_names_the_candidates(store: RunStore) -> None:
    a = _new_run(store, run_id="20250101-000000-aaaaaa")
    b = _new_run(store, run_id="20250101-000000-aaaabb")
    with pytest.raises(RunNotFound, match="matches several runs") as info:
        store.get_run("20250101-000000-aaaa")
    assert a in str(info.value) and b in str(info.value)
    assert store.get_run("20250101-000000-aaaab")["run_id"] == b


def test_list_runs_newest_first_with_filters(store: RunStore) -> None:
    fire = datetime(2025, 1, 1, tzinfo=UTC)
    first = _new_run(store, "a.ipynb")
    second = _new_run(store, "b.ipynb", schedule="hourly", scheduled_time=fire)
    third = _new_run(store, "a.ipynb")
    store.set_run_status(second, "running")
    store.set_run_status(second, "succeeded")

    runs = store.list_runs()
    assert [r["run_id"] for r in runs] == [third, second, first]
    assert all(set(r) == RUNS_KEYS for r in runs)
    assert runs[1] == {
        "run_id": second,
        "notebook": "b.ipynb",
        "status": "succeeded",
        "schedule": "hourly",
        "scheduled_time": "2025-01-01T00:00:00+00:00",
        "created_at": runs[1]["created_at"],
        "finished_at": runs[1]["finished_at"],
        "cancelled_by": None,
        "idle_s": None,  # never resumed
    }
    assert runs[1]["finished_at"] is not None and runs[0]["finished_at"] is None
    assert runs[0]["schedule"] is None and runs[0]["scheduled_time"] is None

    assert [r["run_id"] for r in store.list_runs(notebook="a.ipynb")] == [third, first]
    assert [r["run_id"] for r in store.list_runs(status="succeeded")] == [second]
    assert [r["run_id"] for r in store.list_runs(schedule="hourly")] == [second]
    assert [r["run_id"] for r in store.list_runs(limit=2)] == [third, second]
    assert store.list_runs(status="cancelled") == []


def test_list_runs_pages_on_the_server_with_offset_and_count(store: RunStore) -> None:
    made = [_new_run(store, "a.ipynb" if i % 3 else "b.ipynb", schedule="nightly" if i % 2 else None)
            for i in range(7)]
    newest_first = made[::-1]
    pages = [store.list_runs(limit=3, offset=o) for o in (0, 3, 6, 9)]
    assert [[r["run_id"] for r in page] for page in pages] == [newest_first[:3], newest_first[3:6],
                                                               newest_first[6:], []]
    assert store.count_runs() == 7
    only_a = [r for r in made[::-1] if store.get_run(r)["notebook"] == "a.ipynb"]
    assert store.count_runs(notebook="a.ipynb") == len(only_a) == 4
    assert [r["run_id"] for r in store.list_runs(limit=2, offset=2, notebook="a.ipynb")] == only_a[2:]
    assert store.count_runs(notebook="a.ipynb", schedule="nightly", status="queued") == 2
    assert store.count_runs(status="failed") == 0
    assert store.run_filter_values() == (["a.ipynb", "b.ipynb"], ["nightly"])


# -- cache ------------------------------------------------------------------------


def test_cache_put_and_get(store: RunStore) -> None:
    run_id = _new_run(store)
    assert store.cache_get("k1") is None
    store.cache_put("k1", "fit", {"r2": {"uri": "file:///a", "content_hash": "h"}}, run_id)
    hit = store.cache_get("k1")
    assert hit is not None
    assert hit["outputs"] == {"r2": {"uri": "file:///a", "content_hash": "h"}}
    assert hit["task"] == "fit" and hit["run_id"] == run_id
    store.cache_put("k1", "fit", {"r2": {"uri": "file:///b"}}, run_id)  # a re-put replaces
    assert store.cache_get("k1")["outputs"] == {"r2": {"uri": "file:///b"}}


def test_cache_lock_contention_between_two_stores(url: str) -> None:
    with RunStore(url) as one, RunStore(url) as two:
        assert one.cache_lock("key", "run-1", ttl_s=60)
        assert not two.cache_lock("key", "run-2", ttl_s=60)
        assert one.cache_lock("key", "run-1", ttl_s=60)  # the holder renews its lease
        two.cache_unlock("key", "run-2")  # not the owner: nothing happens
        assert not two.cache_lock("key", "run-2", ttl_s=60)
        one.cache_unlock("key", "run-1")
        assert two.cache_lock("key", "run-2", ttl_s=60)
        assert not one.cache_lock("key", "run-1", ttl_s=60)


def test_an_expired_cache_lock_is_taken_over(url: str) -> None:
    with RunStore(url) as one, RunStore(url) as two:
        # a negative ttl: the lease is already over, as if its owner had died
        assert one.cache_lock("key", "dead-driver", ttl_s=-1)
        assert two.cache_lock("key", "run-2", ttl_s=60)
        assert not one.cache_lock("key", "dead-driver", ttl_s=60)


def _lock_worker(url: str, barrier: Any, keys: list[str], owner: str, results: Any) -> None:
    store = RunStore(url)
    barrier.wait(timeout=PROCESS_TIMEOUT_S)
    won = [key for key in keys if store.cache_lock(key, owner, ttl_s=60)]
    store.close()
    results.put((owner, won))


def test_cache_lock_has_one_winner_across_processes(url: str) -> None:
    RunStore(url).close()
    keys = [f"key-{i}" for i in range(30)]
    n = 4
    barrier = CTX.Barrier(n)
    results = CTX.Queue()
    procs = [CTX.Process(target=_lock_worker, args=(url, barrier, keys, f"p{i}", results)) for i in range(n)]
    for p in procs:
        p.start()
    outcome = dict(results.get(timeout=PROCESS_TIMEOUT_S) for _ in procs)
    for p in procs:
        p.join(PROCESS_TIMEOUT_S)
        assert p.exitcode == 0
    winners = [key for won in outcome.values() for key in won]
    assert sorted(winners) == sorted(keys)  # every key won exactly once


# -- concurrent first opens and crashes --------------------------------------------


def _open_worker(url: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=PROCESS_TIMEOUT_S)
        with RunStore(url) as store:
            run_id = _new_run(store)
        results.put(("ok", run_id))
    except BaseException as err:  # report it to the parent, which asserts
        results.put(("error", repr(err)))


def test_processes_opening_a_fresh_store_at_once_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'store.db'}"
    n = 4
    barrier = CTX.Barrier(n)
    results = CTX.Queue()
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


def _write_loop(url: str, run_id: str, progressed: Any) -> None:
    store = RunStore(url)
    i = 0
    while True:  # until killed
        task = TASKS[i % len(TASKS)]["name"]
        store.set_task_status(run_id, task, "running")
        number = store.start_attempt(run_id, task, f"worker-{i}", {"CPU": 1})
        store.save_outputs(run_id, task, {f"out{i % 5}": {"type": "int", "preview": str(i), "value": i}})
        store.finish_attempt(run_id, task, number, "succeeded")
        store.set_task_status(run_id, task, "succeeded")
        i += 1
        if i == 20:
            progressed.set()


def test_sigkill_mid_write_loop_leaves_a_consistent_store(url: str, tmp_path: Path) -> None:
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
    assert proc.exitcode == -signal.SIGKILL

    raw = sqlite3.connect(tmp_path / "store.db")
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
        # start_attempt bumps the counter and adds the row in one transaction
        counters = dict(raw.execute("SELECT name, attempts FROM tasks WHERE run_id = ?", (run_id,)))
        rows = dict(
            raw.execute("SELECT task, count(*) FROM attempts WHERE run_id = ? GROUP BY task", (run_id,))
        )
    finally:
        raw.close()
    assert counters == rows
    assert sum(rows.values()) >= 20

    with RunStore(url) as store:
        run = store.get_run(run_id)
        for name, task in run["tasks"].items():
            numbers = [a["number"] for a in run["attempts_detail"][name]]
            assert numbers == list(range(1, task["attempts"] + 1))
        # the store stays writable after the crash
        store.set_run_status(run_id, "failed", error={"message": "driver lost"})
        assert store.get_run(run_id)["status"] == "failed"


def test_the_fast_head_revision_is_alembics_own() -> None:
    """`head_revision` reads file names instead of importing alembic: each file's revision is its prefix and
    the history is one line, so both agree."""
    from alembic.script import ScriptDirectory

    from flyte_lab.store.database import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_current_head() == head_revision()
    for script in scripts.walk_revisions():
        assert Path(script.path).name.startswith(f"{script.revision}_")


def test_a_run_note_is_recorded_once_and_shown(store: RunStore) -> None:
    run_id = _new_run(store)
    assert store.get_run(run_id)["notes"] == []
    assert store.add_run_note(run_id, "kernels are started, not forked")
    assert not store.add_run_note(run_id, "kernels are started, not forked")  # a second worker says it again
    assert store.add_run_note(run_id, "another")
    assert store.get_run(run_id)["notes"] == ["kernels are started, not forked", "another"]


# what the code before the one notebook hash (`flyte_lab/notebook_hash.py`) stored for this fixture: runs and
# schedules stored before it must still match their unchanged notebook
VALID_PIPELINE_HASH = "e614d9316f5ee432c4497e5df4356e1fc642c734c28c507a9947f88ed0a0d172"


def test_a_run_stores_the_notebook_hash_older_runs_stored(store: RunStore, tmp_path: Path) -> None:
    notebook = Path(__file__).parent / "notebooks" / "valid_pipeline.ipynb"
    assert hash_notebook(notebook) == VALID_PIPELINE_HASH
    assert store.run_record(_new_run(store, str(notebook)))["notebook_hash"] == VALID_PIPELINE_HASH
    assert store.run_record(_new_run(store, str(tmp_path / "gone.ipynb")))["notebook_hash"] is None


def test_the_apis_get_and_cancel_use_the_callers_store(store: RunStore, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A server or a command that keeps a store open hands it over; without one, the environment's is opened."""
    from flyte_lab.engine.api import cancel_run, get_run
    from flyte_lab.errors import NoStore

    monkeypatch.setenv("FLYTE_LAB_HOME", str(tmp_path / "empty-home"))  # the environment has no store at all
    monkeypatch.delenv("FLYTE_LAB_DB_URL", raising=False)
    run_id = _new_run(store)
    with pytest.raises(NoStore):
        get_run(run_id)
    assert get_run(run_id, store)["status"] == "queued"
    assert cancel_run(run_id, store) == (run_id, "recorded")  # no live driver: cancelled by the call itself
    assert get_run(run_id, store)["status"] == "cancelled"
    assert store.get_run(run_id)["status"] == "cancelled"  # the caller's store is still open
    assert not (tmp_path / "empty-home").exists()  # nothing was created in the environment's place
