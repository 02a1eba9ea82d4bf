"""The run store's tables, as SQLAlchemy 2.0 declarative classes.

The migrations (`migrations/versions/`) are the source of truth for the live
schema; these classes mirror them so the store can query with typed columns and
so `alembic revision --autogenerate` can diff them against a database.

Conventions, chosen to behave the same on SQLite and PostgreSQL:
- timestamps are naive `DateTime` values in UTC (SQLite has no time zones; the
  store adds `+00:00` when it renders them);
- JSON documents are `Text` the store encodes itself, so the JSON written is
  exactly the JSON read back, whatever the dialect.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of every run-store table."""


class Run(Base):
    """One launch of a notebook: its parameters, graph and life cycle."""

    __tablename__ = "runs"
    __table_args__ = (
        # Each (schedule, fire time) makes at most one run, whatever crashes or
        # how many schedulers run; NULLs are distinct, so manual runs never clash.
        UniqueConstraint("schedule", "scheduled_time", name="uq_runs_schedule_time"),
        Index("ix_runs_created_at", "created_at"),
        Index("ix_runs_status", "status"),
        Index("ix_runs_notebook", "notebook"),
    )

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    notebook: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    params_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    schedule: Mapped[str | None] = mapped_column(String(255))
    scheduled_time: Mapped[datetime | None] = mapped_column(DateTime)
    driver_pid: Mapped[int | None] = mapped_column(Integer)
    driver_host: Mapped[str | None] = mapped_column(String(255))
    cluster: Mapped[str | None] = mapped_column(Text)
    notebook_hash: Mapped[str | None] = mapped_column(String(128))
    graph_json: Mapped[str] = mapped_column(Text)
    error_json: Mapped[str | None] = mapped_column(Text)
    fence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime)
    # who asked for the cancel (`statuses.CancelSource`): set with the request, or by the driver on Ctrl-C
    cancelled_by: Mapped[str | None] = mapped_column(String(16))
    options_json: Mapped[str | None] = mapped_column(Text)
    # a JSON list of sentences the driver recorded once each (e.g. why task kernels were not forked)
    notes_json: Mapped[str | None] = mapped_column(Text)
    # seconds the run sat ended before resumes reopened it: not part of its duration (`formats.run_duration`)
    idle_s: Mapped[float | None] = mapped_column(Float)


class Task(Base):
    """One task of a run; `attempts` counts the rows it has in `attempts`."""

    __tablename__ = "tasks"

    run_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    # graph order, so `show` lists tasks as the notebook declares them
    position: Mapped[int] = mapped_column(Integer)
    cell: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    resources_json: Mapped[str] = mapped_column(Text)
    cache_key: Mapped[str | None] = mapped_column(String(128))
    output_notebook: Mapped[str | None] = mapped_column(Text)
    error_json: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    duration_s: Mapped[float | None] = mapped_column(Float)


class Attempt(Base):
    """One execution of a task on a worker (a retry is a new row)."""

    __tablename__ = "attempts"
    __table_args__ = (
        ForeignKeyConstraint(["run_id", "task"], ["tasks.run_id", "tasks.name"], ondelete="CASCADE"),
        UniqueConstraint("run_id", "task", "number", name="uq_attempts_number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(255))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str | None] = mapped_column(String(16))
    worker: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    error_json: Mapped[str | None] = mapped_column(Text)
    output_notebook: Mapped[str | None] = mapped_column(Text)
    resources_json: Mapped[str | None] = mapped_column(Text)
    usage_json: Mapped[str | None] = mapped_column(Text)  # what its kernel used: peak_rss_bytes, cpu_s


class Output(Base):
    """One output of a task: where its artifact lives and how to show it."""

    __tablename__ = "outputs"
    __table_args__ = (
        ForeignKeyConstraint(["run_id", "task"], ["tasks.run_id", "tasks.name"], ondelete="CASCADE"),
    )

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    type_text: Mapped[str] = mapped_column(Text)
    uri: Mapped[str | None] = mapped_column(Text)
    codec: Mapped[str | None] = mapped_column(String(64))
    content_hash: Mapped[str | None] = mapped_column(String(128))
    preview: Mapped[str | None] = mapped_column(Text)
    # NULL: the value is not JSON-able (readers fall back to `preview`)
    value_json: Mapped[str | None] = mapped_column(Text)


class CacheEntry(Base):
    """Outputs of a cached task, reusable by any run with the same key."""

    __tablename__ = "cache_entries"

    cache_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    task: Mapped[str] = mapped_column(String(255))
    outputs_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    run_id: Mapped[str | None] = mapped_column(String(64))


class CacheLock(Base):
    """Who is computing a cache key right now, so identical runs do it once."""

    __tablename__ = "cache_locks"

    cache_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    task: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class Schedule(Base):
    """A notebook launched on a cron or fixed-rate schedule (`flyte-lab schedule add`)."""

    __tablename__ = "schedules"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    notebook: Mapped[str] = mapped_column(Text)
    notebook_hash: Mapped[str | None] = mapped_column(String(128))
    cron: Mapped[str | None] = mapped_column(String(255))
    every_s: Mapped[float | None] = mapped_column(Float)
    timezone: Mapped[str] = mapped_column(String(64))
    params_json: Mapped[str] = mapped_column(Text)
    start_at: Mapped[datetime] = mapped_column(DateTime)
    catchup: Mapped[bool] = mapped_column(Boolean)
    max_catchup: Mapped[int] = mapped_column(Integer)
    max_active: Mapped[int] = mapped_column(Integer)
    overlap: Mapped[str] = mapped_column(String(16))
    paused: Mapped[bool] = mapped_column(Boolean)
    notify_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # the latest fire time already decided (pending, launched or skipped)
    cursor_at: Mapped[datetime | None] = mapped_column(DateTime)


class ScheduleFire(Base):
    """One fire time of a schedule and who is launching it: the claim that makes it happen exactly once."""

    __tablename__ = "schedule_fires"
    __table_args__ = (Index("ix_schedule_fires_state", "state"),)

    schedule: Mapped[str] = mapped_column(
        String(255), ForeignKey("schedules.name", ondelete="CASCADE"), primary_key=True
    )
    fire_time: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    # pending (due, waiting for a slot) | claimed | launched | skipped | failed
    state: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    run_id: Mapped[str | None] = mapped_column(String(64))
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reason: Mapped[str | None] = mapped_column(Text)
    # the planning pass that found it due: fire times of one pass queue behind each other
    planned_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class Notification(Base):
    """One notification delivery (or failed delivery) about a finished run."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_run_id", "run_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(16))
    # the target with any credentials removed
    target: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ScaleEvent(Base):
    """One decision of the per-profile autoscaler: a worker group's replicas changed, and why."""

    __tablename__ = "scale_events"
    __table_args__ = (Index("ix_scale_events_run_id", "run_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), ForeignKey("runs.run_id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime)
    group_name: Mapped[str] = mapped_column(String(255))
    profile: Mapped[str] = mapped_column(String(255))
    from_replicas: Mapped[int] = mapped_column(Integer)
    to_replicas: Mapped[int] = mapped_column(Integer)
    # waiting_tasks | idle_timeout | min_workers
    reason: Mapped[str] = mapped_column(String(32))
    # tasks waiting for the group's profile when it was decided
    waiting: Mapped[int] = mapped_column(Integer)


class TaskOutputLine(Base):
    """One line a running attempt printed (its live output): the newest `task_output.KEEP_LINES` of each attempt
    (each map-over element) are kept; the executed notebook holds them all."""

    __tablename__ = "task_output"
    __table_args__ = (
        Index("ix_task_output_run", "run_id", "id"),
        Index("ix_task_output_attempt", "run_id", "task", "attempt", "element", "line_no"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), ForeignKey("runs.run_id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(255))
    attempt: Mapped[int] = mapped_column(Integer)
    element: Mapped[int] = mapped_column(Integer)  # a map-over element's index; -1 for a task of its own
    line_no: Mapped[int] = mapped_column(Integer)  # 1-based within the attempt (element)
    stream: Mapped[str] = mapped_column(String(8))  # stdout | stderr | error | display
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime)
