"""initial run store: runs, tasks, attempts, outputs, cache entries and locks

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("notebook", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("schedule", sa.String(255), nullable=True),
        sa.Column("scheduled_time", sa.DateTime(), nullable=True),
        sa.Column("driver_pid", sa.Integer(), nullable=True),
        sa.Column("driver_host", sa.String(255), nullable=True),
        sa.Column("cluster", sa.Text(), nullable=True),
        sa.Column("notebook_hash", sa.String(128), nullable=True),
        sa.Column("graph_json", sa.Text(), nullable=False),
        sa.Column("error_json", sa.Text(), nullable=True),
        sa.UniqueConstraint("schedule", "scheduled_time", name="uq_runs_schedule_time"),
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_notebook", "runs", ["notebook"])

    op.create_table(
        "tasks",
        sa.Column(
            "run_id",
            sa.String(64),
            sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("cell", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("resources_json", sa.Text(), nullable=False),
        sa.Column("cache_key", sa.String(128), nullable=True),
        sa.Column("output_notebook", sa.Text(), nullable=True),
        sa.Column("error_json", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
    )

    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("task", sa.String(255), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("error_json", sa.Text(), nullable=True),
        sa.Column("output_notebook", sa.Text(), nullable=True),
        sa.Column("resources_json", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id", "task"], ["tasks.run_id", "tasks.name"], ondelete="CASCADE"),
        sa.UniqueConstraint("run_id", "task", "number", name="uq_attempts_number"),
    )

    op.create_table(
        "outputs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("task", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("type_text", sa.Text(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=True),
        sa.Column("codec", sa.String(64), nullable=True),
        sa.Column("content_hash", sa.String(128), nullable=True),
        sa.Column("preview", sa.Text(), nullable=True),
        sa.Column("value_json", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id", "task"], ["tasks.run_id", "tasks.name"], ondelete="CASCADE"),
    )

    op.create_table(
        "cache_entries",
        sa.Column("cache_key", sa.String(128), primary_key=True),
        sa.Column("task", sa.String(255), nullable=False),
        sa.Column("outputs_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
    )

    op.create_table(
        "cache_locks",
        sa.Column("cache_key", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cache_locks")
    op.drop_table("cache_entries")
    op.drop_table("outputs")
    op.drop_table("attempts")
    op.drop_table("tasks")
    op.drop_index("ix_runs_notebook", table_name="runs")
    op.drop_index("ix_runs_status", table_name="runs")
    op.drop_index("ix_runs_created_at", table_name="runs")
    op.drop_table("runs")
