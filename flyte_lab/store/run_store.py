"""The run store: the one durable record of runs, tasks, attempts and outputs.

The driver is its only writer of run state and writes *before* acting, so every
write method is one short transaction committed before it returns, and every
state update is idempotent (a write retried after a lost acknowledgement leaves
the same row). Monitoring (CLI, widget, dashboard, REST) only reads.

Dictionaries returned by `get_run` and `list_runs` are the `show --json` and
`runs --json` shapes of DESIGN.md section 3, timestamps as ISO-8601 UTC strings.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Select, Text, exc, func, insert, literal, select, update

from flyte_lab.errors import FlyteLabError, NoStore, RunNotFound, ScheduledRunExists, UserInputError
from flyte_lab.notebook_hash import hash_notebook
from flyte_lab.private_fs import make_private_home
from flyte_lab.statuses import RUN_TERMINAL, TASK_TERMINAL, RunStatus, TaskStatus
from flyte_lab.store import database
from flyte_lab.store.cache import CacheMixin
from flyte_lab.store.leases import LeaseMixin
from flyte_lab.store.row_records import record_view, run_summary_views, show_view, summary_view, task_state_view
from flyte_lab.store.rows import (
    dumps,
    iso,
    loads,
    new_run_id,
    now_utc,
    to_db_time,
)
from flyte_lab.store.scale_events import ScaleEventsMixin, scale_events_of
from flyte_lab.store.schedules import SchedulesMixin
from flyte_lab.store.schema import Attempt, Output, Run, Schedule, Task
from flyte_lab.store.task_output import TaskOutputMixin

ATTEMPT_KINDS = frozenset({"user", "infra"})


class RunStore(CacheMixin, LeaseMixin, SchedulesMixin, ScaleEventsMixin, TaskOutputMixin):
    """Runs, tasks, attempts, outputs and the task cache, in one SQL database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.home: Path | None = None
        self._engine = database.create_store_engine(url)
        # same pool, but its transactions take the write lock at BEGIN
        self._write_engine = self._engine.execution_options(**{database.WRITE_OPTION: True})
        self._pid = os.getpid()
        try:
            database.upgrade(self._engine)
        except BaseException:
            # closed now, not by the collector at exit (our CLI exits without one): a refused store keeps no
            # -wal/-shm files
            self._engine.dispose()
            raise

    @classmethod
    def from_env(cls, home: str | Path | None = None, *, create: bool = True) -> RunStore:
        """The store of `home` (else $FLYTE_LAB_HOME, else ~/.flyte_lab); $FLYTE_LAB_DB_URL wins.

        A new home is private (0700). With `create=False` (read-only commands) nothing is created:
        `NoStore` if there is no store yet. A URL that cannot be opened is one
        `UserInputError` line naming where it came from.
        """
        home_path = Path(home or os.environ.get("FLYTE_LAB_HOME") or "~/.flyte_lab").expanduser()
        env_url = os.environ.get("FLYTE_LAB_DB_URL")
        url = env_url or f"sqlite:///{home_path / 'store.db'}"
        source = "FLYTE_LAB_DB_URL" if env_url else "the run store"
        try:
            if create:
                make_private_home(home_path)
            else:
                database.require_existing(url)
            store = cls(url)
        except NoStore:
            raise
        except (exc.SQLAlchemyError, ImportError, OSError) as err:
            raise database.refuse_url(url, source, err) from None
        store.home = home_path
        return store

    @classmethod
    def open_existing(cls, run_id: str, *, starts_one: str = "`flyte-lab run NOTEBOOK`") -> RunStore:
        """The existing store, to read run `run_id` from; creates nothing. Without a store there is no such run:
        `RunNotFound` (saying how to start one: `starts_one`), the answer every reader of a run gives."""
        try:
            return cls.from_env(create=False)
        except NoStore:
            raise RunNotFound(f"no run `{run_id}`: there are no runs yet; {starts_one} starts one",
                              run_id=run_id) from None

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({self._display_url()!r})"

    # -- connections ---------------------------------------------------------

    def _check_fork(self) -> None:
        # A forked child must not reuse its parent's pooled connections.
        if os.getpid() != self._pid:
            self._engine.dispose(close=False)
            self._pid = os.getpid()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One short write transaction, committed when the block ends."""
        self._check_fork()
        with self._write_engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """One read transaction: a consistent snapshot for several queries."""
        self._check_fork()
        with self._engine.connect() as conn, conn.begin():
            yield conn

    def _display_url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    def _not_found(self, run_id: str) -> RunNotFound:
        return RunNotFound(
            f"no run `{run_id}` in the store at {self._display_url()}; `flyte-lab runs` lists them",
            run_id=run_id,
        )

    def _resolve(self, conn: Connection, run_id: str) -> str:
        """The full id of `run_id`, which may be a unique prefix."""
        if conn.execute(select(Run.run_id).where(Run.run_id == run_id)).first():
            return run_id
        if not run_id:
            raise self._not_found(run_id)
        escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        matches = conn.scalars(
            select(Run.run_id).where(Run.run_id.like(f"{escaped}%", escape="\\")).limit(6)
        ).all()
        if not matches:
            raise self._not_found(run_id)
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
            raise RunNotFound(
                f"run id prefix `{run_id}` matches several runs ({shown}); give more characters",
                run_id=run_id,
            )
        return matches[0]

    # -- runs ----------------------------------------------------------------

    def create_run(
        self,
        notebook: str,
        params: dict[str, Any],
        graph_json: dict[str, Any],
        tasks: list[dict[str, Any]],
        cluster: str,
        schedule: str | None = None,
        scheduled_time: datetime | str | None = None,
        *,
        notebook_hash: str | None = None,
        run_id: str | None = None,
        options: dict[str, Any] | None = None,
        reused: dict[str, dict[str, Any]] | None = None,
    ) -> str:
        """Record a queued run and its queued tasks; returns the new run id.

        `tasks` are `{"name", "cell", "resources"}` in graph order. Raises
        `ScheduledRunExists` if (schedule, scheduled_time) already has a run.
        `reused`: tasks of a partial run taken from an earlier run (`ReusedTask.row()`: attempts, cache key,
        executed notebook, outputs), recorded `reused` with their outputs in the same transaction.
        """
        reused = reused or {}
        run_id = run_id or new_run_id()
        now = now_utc()
        fire_time = to_db_time(scheduled_time)
        run_row = {
            "run_id": run_id,
            "notebook": str(notebook),
            "status": RunStatus.QUEUED,
            "params_json": dumps(params),
            "created_at": now,
            "schedule": schedule,
            "scheduled_time": fire_time,
            "driver_host": socket.gethostname(),
            "cluster": cluster,
            "notebook_hash": notebook_hash or hash_notebook(notebook),
            "graph_json": dumps(graph_json),
            "options_json": dumps(options or {}),
            "fence": 0,
        }
        task_rows = [
            {
                "run_id": run_id,
                "name": t["name"],
                "position": i,
                "cell": t.get("cell"),
                "status": TaskStatus.REUSED if t["name"] in reused else TaskStatus.QUEUED,
                "attempts": reused.get(t["name"], {}).get("attempts") or 0,
                "cache_key": reused.get(t["name"], {}).get("cache_key"),
                "output_notebook": reused.get(t["name"], {}).get("output_notebook"),
                "resources_json": dumps(t.get("resources") or {}),
            }
            for i, t in enumerate(tasks)
        ]
        try:
            with self._write() as conn:
                conn.execute(insert(Run), [run_row])
                if task_rows:
                    conn.execute(insert(Task), task_rows)
                for name, row in reused.items():
                    self._save_outputs(conn, run_id, name, row["outputs"])
        except exc.IntegrityError:
            if schedule is None:
                raise
            with self._read() as conn:
                existing = conn.scalar(
                    select(Run.run_id).where(Run.schedule == schedule, Run.scheduled_time == fire_time)
                )
            if existing is None:
                raise
            raise ScheduledRunExists(
                f"schedule `{schedule}` already has run `{existing}` for {iso(fire_time)}",
                run_id=existing,
            ) from None
        return run_id

    def set_run_status(self, run_id: str, status: str, *, error: dict[str, Any] | None = None,
                       cancelled_by: str | None = None, fence: int | None = None) -> None:
        """Move a run to `status`; records this process as its driver (and who cancelled it, when given)."""
        if status not in set(RunStatus):
            raise ValueError(f"unknown run status {status!r}; expected one of {list(RunStatus)}")
        with self._write() as conn:
            self.check_fence(conn, run_id, fence)
            row = conn.execute(
                select(Run.status, Run.started_at, Run.finished_at, Run.idle_s).where(Run.run_id == run_id)
            ).first()
            if row is None:
                raise self._not_found(run_id)
            now = now_utc()
            values: dict[str, Any] = {
                "status": status,
                "driver_pid": os.getpid(),
                "driver_host": socket.gethostname(),
            }
            if status == RunStatus.RUNNING:
                # started_at is the first start; a resume keeps it but reopens the run
                if row.started_at is None:
                    values["started_at"] = now
                elif row.finished_at is not None:  # reopened by a resume: the time it sat ended is no run time
                    values["idle_s"] = (row.idle_s or 0.0) + max(0.0, (now - row.finished_at).total_seconds())
                values["finished_at"] = None
                values["error_json"] = None
            elif status in RUN_TERMINAL:
                if row.status != status or row.finished_at is None:
                    values["finished_at"] = now
            else:
                values["finished_at"] = None
            if error is not None:
                values["error_json"] = dumps(error)
            if cancelled_by is not None:
                values["cancelled_by"] = cancelled_by
            conn.execute(update(Run).where(Run.run_id == run_id).values(**values))

    def add_run_note(self, run_id: str, note: str, *, fence: int | None = None) -> bool:
        """Record `note` on the run unless it is there already; True if it is new."""
        with self._write() as conn:
            self.check_fence(conn, run_id, fence)
            notes = loads(conn.scalar(select(Run.notes_json).where(Run.run_id == run_id))) or []
            if note in notes:
                return False
            conn.execute(update(Run).where(Run.run_id == run_id).values(notes_json=dumps([*notes, note])))
        return True

    def get_run(self, run_id: str) -> dict[str, Any]:
        """The `show --json` object, plus `schedule`, `scheduled_time`, `error`, `attempts_detail`,
        `scale_events`."""
        with self._read() as conn:
            run_id = self._resolve(conn, run_id)
            run = conn.execute(select(Run).where(Run.run_id == run_id)).one()
            tasks = conn.execute(select(Task).where(Task.run_id == run_id).order_by(Task.position)).all()
            outputs = conn.execute(
                select(Output).where(Output.run_id == run_id).order_by(Output.task, Output.name)
            ).all()
            attempts = conn.execute(
                select(Attempt).where(Attempt.run_id == run_id).order_by(Attempt.task, Attempt.number)
            ).all()
            scale_events = scale_events_of(conn, run_id)
        return show_view(run, tasks, outputs, attempts, scale_events)

    def run_record(self, run_id: str) -> dict[str, Any]:
        """The run's own row (driver pid/host, cluster, notebook hash…), for resume and ops."""
        with self._read() as conn:
            run_id = self._resolve(conn, run_id)
            run = conn.execute(select(Run).where(Run.run_id == run_id)).one()
        return record_view(run)

    def list_runs(
        self,
        limit: int = 100,
        status: str | None = None,
        notebook: str | None = None,
        schedule: str | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """The `runs --json` array, newest first, optionally filtered; `offset` skips that many (paging)."""
        query = _filtered(select(
            Run.run_id,
            Run.notebook,
            Run.status,
            Run.schedule,
            Run.scheduled_time,
            Run.created_at,
            Run.finished_at,
            Run.cancelled_by,
            Run.idle_s,
        ), status, notebook, schedule)
        # run ids sort by time too, and break ties within one clock tick
        query = query.order_by(Run.created_at.desc(), Run.run_id.desc()).limit(limit).offset(max(offset, 0))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [summary_view(r) for r in rows]

    def run_summaries(self, limit: int = 100, status: str | None = None, notebook: str | None = None,
                      schedule: str | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """The `list_runs` page, each run with what a list of runs shows of it, in three statements however many
        runs there are (never one read per run): `started_at`, `params`, `task_counts` (`{status: n}`) and
        `tasks` (`{name: {"status", "cell", "error", "outputs"}}` in graph order; `outputs`, `{name: {"uri"}}`, read
        only for runs with map-over tasks, whose element counts need them), and `graph` for those runs (else None):
        what `run_progress.summary_progress` counts from."""
        query = _filtered(select(
            Run.run_id, Run.notebook, Run.status, Run.schedule, Run.scheduled_time, Run.created_at,
            Run.started_at, Run.finished_at, Run.cancelled_by, Run.idle_s, Run.params_json, Run.graph_json,
        ), status, notebook, schedule)
        query = query.order_by(Run.created_at.desc(), Run.run_id.desc()).limit(limit).offset(max(offset, 0))
        with self._read() as conn:
            rows = conn.execute(query).all()
            ids = [r.run_id for r in rows]
            tasks = conn.execute(select(Task.run_id, Task.name, Task.status, Task.cell, Task.error_json)
                                 .where(Task.run_id.in_(ids)).order_by(Task.run_id, Task.position)).all() if ids else []
            graphs = {r.run_id: graph for r in rows if _maps_over(graph := loads(r.graph_json))}
            outputs = conn.execute(select(Output.run_id, Output.task, Output.name, Output.uri)
                                   .where(Output.run_id.in_(list(graphs)))).all() if graphs else []
        return run_summary_views(rows, tasks, outputs, graphs)

    def count_runs(self, status: str | None = None, notebook: str | None = None,
                   schedule: str | None = None) -> int:
        """How many runs `list_runs` would page through with these filters (one COUNT, no rows read)."""
        with self._read() as conn:
            return int(conn.scalar(_filtered(select(func.count()).select_from(Run), status, notebook, schedule))
                       or 0)

    def move_notebook(self, old: str, new: str) -> int:
        """A notebook (or a folder of them) was renamed or moved: its runs and schedules name it by `new` from now
        on, so listing them by the new path finds them. Returns how many runs and schedules moved. Absolute paths;
        a folder moves everything under it."""
        old, new = old.rstrip(os.sep), new.rstrip(os.sep)
        moved = 0
        with self._write() as conn:
            for table in (Run, Schedule):
                column = table.notebook
                exact = conn.execute(update(table).where(column == old).values(notebook=new))
                # a folder: a prefix test by substring, not LIKE, so `_` and `%` in names mean themselves
                inside = old + os.sep
                nested = conn.execute(update(table).where(func.substr(column, 1, len(inside)) == inside)
                                      .values(notebook=literal(new, Text()).concat(func.substr(column, len(old) + 1))))
                moved += exact.rowcount + nested.rowcount
        return moved

    def run_filter_values(self) -> tuple[list[str], list[str]]:
        """The distinct notebooks and schedules of all runs, sorted: what the runs can be filtered by."""
        with self._read() as conn:
            notebooks = conn.scalars(select(Run.notebook).distinct().order_by(Run.notebook)).all()
            schedules = conn.scalars(select(Run.schedule).where(Run.schedule.is_not(None)).distinct()
                                     .order_by(Run.schedule)).all()
        return [str(n) for n in notebooks], [str(s) for s in schedules]

    def get_graph(self, run_id: str) -> dict[str, Any]:
        """The validated graph JSON stored at launch: all `resume` needs."""
        with self._read() as conn:
            run_id = self._resolve(conn, run_id)
            text = conn.scalar(select(Run.graph_json).where(Run.run_id == run_id))
        return loads(text)

    # -- tasks and attempts ------------------------------------------------------

    def run_tasks(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Every task's state, in graph order."""
        with self._read() as conn:
            run_id = self._resolve(conn, run_id)
            rows = conn.execute(select(Task).where(Task.run_id == run_id).order_by(Task.position)).all()
        return {t.name: task_state_view(t) for t in rows}

    def set_task_status(
        self,
        run_id: str,
        task: str,
        status: str,
        *,
        error: dict[str, Any] | None = None,
        output_notebook: str | None = None,
        cache_key: str | None = None,
        at: datetime | None = None,
        fence: int | None = None,
    ) -> None:
        """Move a task to `status`; terminal statuses stamp finished_at and duration_s.

        `at` is when it happened, if not now (a worker's own clock for the start of a task).
        """
        if status not in set(TaskStatus):
            raise ValueError(f"unknown task status {status!r}; expected one of {list(TaskStatus)}")
        with self._write() as conn:
            self.check_fence(conn, run_id, fence)
            self._set_task_status(conn, run_id, task, status, error=error, output_notebook=output_notebook,
                                  cache_key=cache_key, at=at)

    def _set_task_status(self, conn: Connection, run_id: str, task: str, status: str, *,
                         error: dict[str, Any] | None = None, output_notebook: str | None = None,
                         cache_key: str | None = None, at: datetime | None = None) -> None:
        row = conn.execute(
            select(Task.status, Task.started_at, Task.finished_at).where(
                Task.run_id == run_id, Task.name == task
            )
        ).first()
        if row is None:
            raise self._missing_task(conn, run_id, task)
        now = at or now_utc()
        values: dict[str, Any] = {"status": status}
        if status == TaskStatus.RUNNING:
            if row.status != TaskStatus.RUNNING or row.started_at is None:
                # a new start (first run, or rerun by resume): reset the clock
                values.update(started_at=now, finished_at=None, duration_s=None, error_json=None)
        elif status in TASK_TERMINAL:
            if row.status != status or row.finished_at is None:
                values["finished_at"] = now
                values["duration_s"] = (
                    round((now - row.started_at).total_seconds(), 6)
                    if row.started_at is not None
                    else None
                )
            if status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):  # these two say why
                values["error_json"] = None
        else:  # queued again (resume): its earlier attempt's start is no start of what comes now (a cache hit)
            values.update(started_at=None, finished_at=None, duration_s=None, error_json=None)
        if error is not None:
            values["error_json"] = dumps(error)
        if output_notebook is not None:
            values["output_notebook"] = output_notebook
        if cache_key is not None:
            values["cache_key"] = cache_key
        conn.execute(update(Task).where(Task.run_id == run_id, Task.name == task).values(**values))

    def _missing_task(self, conn: Connection, run_id: str, task: str) -> FlyteLabError:
        if conn.execute(select(Run.run_id).where(Run.run_id == run_id)).first() is None:
            return self._not_found(run_id)
        return UserInputError(
            f"run `{run_id}` has no task `{task}`; `flyte-lab show {run_id}` lists its tasks",
            run_id=run_id,
            task=task,
        )

    def start_attempt(self, run_id: str, task: str, worker: str | None, resources: dict[str, Any], *,
                      number: int | None = None, fence: int | None = None) -> int:
        """Record a new running attempt of `task`; returns its 1-based number: `number` as the run's state
        machine numbered it (a driver's), else the next one."""
        with self._write() as conn:
            self.check_fence(conn, run_id, fence)
            attempts = conn.scalar(select(Task.attempts).where(Task.run_id == run_id, Task.name == task))
            if attempts is None:
                raise self._missing_task(conn, run_id, task)
            number = attempts + 1 if number is None else number
            conn.execute(update(Task).where(Task.run_id == run_id, Task.name == task).values(attempts=number))
            conn.execute(
                insert(Attempt).values(
                    run_id=run_id,
                    task=task,
                    number=number,
                    status=TaskStatus.RUNNING,  # an attempt's status is one of its task's
                    worker=worker,
                    started_at=now_utc(),
                    resources_json=dumps(resources),
                )
            )
        return number

    def finish_attempt(
        self,
        run_id: str,
        task: str,
        number: int,
        status: str,
        *,
        kind: str | None = None,
        error: dict[str, Any] | None = None,
        output_notebook: str | None = None,
        fence: int | None = None,
        usage: dict[str, float] | None = None,
    ) -> None:
        """Close attempt `number`; `kind` says who is at fault ("user" or "infra"); `usage` what its kernel used."""
        if kind is not None and kind not in ATTEMPT_KINDS:
            raise ValueError(f"unknown attempt kind {kind!r}; expected 'user', 'infra' or None")
        with self._write() as conn:
            self.check_fence(conn, run_id, fence)
            self._finish_attempt(conn, run_id, task, number, status, kind=kind, error=error,
                                 output_notebook=output_notebook, usage=usage)

    def _finish_attempt(self, conn: Connection, run_id: str, task: str, number: int, status: str, *,
                        kind: str | None, error: dict[str, Any] | None, output_notebook: str | None,
                        usage: dict[str, float] | None = None) -> None:
        where = (Attempt.run_id == run_id, Attempt.task == task, Attempt.number == number)
        found = conn.execute(select(Attempt.finished_at).where(*where)).first()
        if found is None:
            raise UserInputError(
                f"task `{task}` of run `{run_id}` has no attempt {number}",
                run_id=run_id,
                task=task,
            )
        values: dict[str, Any] = {
            "status": status,
            "kind": kind,
            "error_json": None if error is None else dumps(error),
        }
        if found.finished_at is None:
            values["finished_at"] = now_utc()
        if output_notebook is not None:
            values["output_notebook"] = output_notebook
        if usage is not None:
            values["usage_json"] = dumps(usage)
        conn.execute(update(Attempt).where(*where).values(**values))
        if output_notebook is not None:
            # the task shows the executed notebook of its latest attempt
            conn.execute(
                update(Task)
                .where(Task.run_id == run_id, Task.name == task, Task.attempts == number)
                .values(output_notebook=output_notebook)
            )

    def record_attempt_notebook(self, run_id: str, task: str, number: int, output_notebook: str, *,
                                fence: int | None = None) -> None:
        """A running attempt saved its executed notebook for the first time: readers may open it mid-run."""
        with self._write() as conn:
            self.check_fence(conn, run_id, fence)
            conn.execute(update(Attempt).where(Attempt.run_id == run_id, Attempt.task == task,
                                               Attempt.number == number).values(output_notebook=output_notebook))
            conn.execute(update(Task).where(Task.run_id == run_id, Task.name == task, Task.attempts == number)
                         .values(output_notebook=output_notebook))

    # -- outputs -----------------------------------------------------------------

    def save_outputs(self, run_id: str, task: str, outputs: dict[str, dict[str, Any]], *,
                     fence: int | None = None) -> None:
        """Record a task's outputs (replacing any saved before under the same names).

        Each value is `{"type", "uri", "codec", "content_hash", "preview"}` plus an
        optional `"value"`: the JSON value of a JSON-able output.
        """
        with self._write() as conn:
            self.check_fence(conn, run_id, fence)
            self._save_outputs(conn, run_id, task, outputs)

    def _save_outputs(self, conn: Connection, run_id: str, task: str, outputs: dict[str, dict[str, Any]]) -> None:
        known = conn.execute(select(Task.name).where(Task.run_id == run_id, Task.name == task)).first()
        if known is None:
            raise self._missing_task(conn, run_id, task)
        rows = [
            {
                "run_id": run_id,
                "task": task,
                "name": name,
                "type_text": str(o.get("type", "")),
                "uri": o.get("uri"),
                "codec": o.get("codec"),
                "content_hash": o.get("content_hash"),
                "preview": o.get("preview"),
                "value_json": dumps(o["value"]) if "value" in o else None,
            }
            for name, o in outputs.items()
        ]
        if rows:
            database.upsert(conn, Output, rows, ["run_id", "task", "name"])

    def commit_success(self, run_id: str, task: str, number: int | None, outputs: dict[str, dict[str, Any]], *,
                       output_notebook: str | None = None, cache_key: str | None = None,
                       cache_entry: bool = False, fence: int | None = None,
                       usage: dict[str, float] | None = None) -> None:
        """The finishing transaction: outputs, attempt, task status and (with `cache_entry`) the cache
        entry plus the release of its lock commit together, so a crash leaves all or nothing and a run
        waiting on the key never sees the lock gone without the entry."""
        with self._write() as conn:
            self.check_fence(conn, run_id, fence)
            self._save_outputs(conn, run_id, task, outputs)
            if number is not None:
                self._finish_attempt(conn, run_id, task, number, TaskStatus.SUCCEEDED, kind=None, error=None,
                                     output_notebook=output_notebook, usage=usage)
            self._set_task_status(conn, run_id, task, TaskStatus.SUCCEEDED, output_notebook=output_notebook,
                                  cache_key=cache_key)
            if cache_entry and cache_key:
                self.cache_put_in(conn, cache_key, task, outputs, run_id)
                self.cache_unlock_in(conn, cache_key, run_id)

    def get_outputs(self, run_id: str, task: str) -> dict[str, dict[str, Any]]:
        """`{name: {"type", "uri", "codec", "content_hash", "preview"[, "value"]}}`.

        `"value"` is present only for outputs saved with a JSON value.
        """
        with self._read() as conn:
            run_id = self._resolve(conn, run_id)
            rows = conn.execute(
                select(Output).where(Output.run_id == run_id, Output.task == task).order_by(Output.name)
            ).all()
        result: dict[str, dict[str, Any]] = {}
        for o in rows:
            entry: dict[str, Any] = {
                "type": o.type_text,
                "uri": o.uri,
                "codec": o.codec,
                "content_hash": o.content_hash,
                "preview": o.preview,
            }
            if o.value_json is not None:
                entry["value"] = json.loads(o.value_json)
            result[o.name] = entry
        return result

    def run_outputs(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The `outputs --json` object: JSON values where known, else previews."""
        tasks = self.run_tasks(run_id)
        full_id = self._full_id(run_id)
        result: dict[str, dict[str, Any]] = {}
        for name in tasks:
            outs = self.get_outputs(full_id, name)
            result[name] = {k: o["value"] if "value" in o else o["preview"] for k, o in outs.items()}
        return result

    def _full_id(self, run_id: str) -> str:
        with self._read() as conn:
            return self._resolve(conn, run_id)


_Query = TypeVar("_Query", bound="Select[*tuple[Any, ...]]")


def _filtered(query: _Query, status: str | None, notebook: str | None, schedule: str | None) -> _Query:
    if status is not None:
        query = query.where(Run.status == status)
    if notebook is not None:
        query = query.where(Run.notebook == str(notebook))
    if schedule is not None:
        query = query.where(Run.schedule == schedule)
    return query


def _maps_over(graph: Any) -> bool:
    return isinstance(graph, dict) and any((t.get("options") or {}).get("map_over") for t in graph.get("tasks", []))
