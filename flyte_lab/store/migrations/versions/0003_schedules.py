"""schedules: cron/fixed-rate schedules, their fire times (claims), notification deliveries

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 04:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("notebook", sa.Text(), nullable=False),
        sa.Column("notebook_hash", sa.String(128), nullable=True),
        sa.Column("cron", sa.String(255), nullable=True),
        sa.Column("every_s", sa.Float(), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("start_at", sa.DateTime(), nullable=False),
        sa.Column("catchup", sa.Boolean(), nullable=False),
        sa.Column("max_catchup", sa.Integer(), nullable=False),
        sa.Column("max_active", sa.Integer(), nullable=False),
        sa.Column("overlap", sa.String(16), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("notify_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        # the latest fire time already decided (pending, launched or skipped)
        sa.Column("cursor_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "schedule_fires",
        sa.Column("schedule", sa.String(255), sa.ForeignKey("schedules.name", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("fire_time", sa.DateTime(), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("claims", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("reason", sa.Text(), nullable=True),
        # the planning pass that found it due: fire times of one pass queue behind each other
        sa.Column("planned_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_schedule_fires_state", "schedule_fires", ["state"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_notifications_run_id", "notifications", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_notifications_run_id", table_name="notifications")
    op.drop_table("notifications")
    op.drop_index("ix_schedule_fires_state", table_name="schedule_fires")
    op.drop_table("schedule_fires")
    op.drop_table("schedules")
