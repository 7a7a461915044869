"""Index the write-back journal by account: pending entries are resolved per account.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_writeback_journal_account", "writeback_journal", ["account_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_writeback_journal_account", "writeback_journal")
