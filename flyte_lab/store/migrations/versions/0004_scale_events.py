"""scale_events: each decision of the per-profile autoscaler (a worker group's replicas, from -> to, and why)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scale_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        # the worker group as people read it (cpu2-mem4gi-3f2a1b) and the Dask resource its tasks ask for
        sa.Column("group_name", sa.String(255), nullable=False),
        sa.Column("profile", sa.String(255), nullable=False),
        sa.Column("from_replicas", sa.Integer(), nullable=False),
        sa.Column("to_replicas", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("waiting", sa.Integer(), nullable=False),
    )
    op.create_index("ix_scale_events_run_id", "scale_events", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_scale_events_run_id", table_name="scale_events")
    op.drop_table("scale_events")
