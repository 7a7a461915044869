"""Cluster mode: when each account is due and which replica synced it last; the replicas.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_schedule",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("due_at", sa.DateTime, nullable=False),
        sa.Column("dispatched_at", sa.DateTime, nullable=True),
        sa.Column("last_sync_at", sa.DateTime, nullable=True),
        sa.Column("last_sync_by", sa.String(255), nullable=True),
        sa.Column("last_outcome", sa.String(32), nullable=True),
    )
    op.create_table(
        "cluster_replicas",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("listen", sa.Text, nullable=False),
        sa.Column("worker_id", sa.BigInteger, nullable=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("seen_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cluster_replicas")
    op.drop_table("cluster_schedule")
