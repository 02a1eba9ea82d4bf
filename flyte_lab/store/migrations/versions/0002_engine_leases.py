"""engine leases: run ownership (fencing token, lease), cancel requests, launch options

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        # one live driver per run: the token grows with each claim, every driver write checks it
        batch.add_column(sa.Column("fence", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("lease_owner", sa.String(255), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("cancel_requested_at", sa.DateTime(), nullable=True))
        # launch options a resume must keep (e.g. --no-cache)
        batch.add_column(sa.Column("options_json", sa.Text(), nullable=True))
    with op.batch_alter_table("cache_locks") as batch:
        batch.add_column(sa.Column("task", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cache_locks") as batch:
        batch.drop_column("task")
    with op.batch_alter_table("runs") as batch:
        for name in ("options_json", "cancel_requested_at", "lease_expires_at", "lease_owner", "fence"):
            batch.drop_column(name)
