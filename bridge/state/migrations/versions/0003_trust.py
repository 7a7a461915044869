"""Write-back you can trust: when each journal entry was sent (the shared rate limit counts
these), the reservation a write-back made, and safety stops waiting for a person.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("writeback_journal") as batch:
        batch.add_column(sa.Column("sent_at", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("new_reservation_id", sa.Integer, nullable=True))
    op.create_index("ix_writeback_journal_sent", "writeback_journal", ["account_id", "sent_at"])
    op.create_table(
        "safety_stops",
        sa.Column("target_id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("uids", sa.Text, nullable=False),
        sa.Column("changed", sa.Integer, nullable=False),
        sa.Column("owned", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("detected_at", sa.DateTime, nullable=False),
        sa.Column("decided_at", sa.DateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("safety_stops")
    op.drop_index("ix_writeback_journal_sent", "writeback_journal")
    with op.batch_alter_table("writeback_journal") as batch:
        batch.drop_column("new_reservation_id")
        batch.drop_column("sent_at")
