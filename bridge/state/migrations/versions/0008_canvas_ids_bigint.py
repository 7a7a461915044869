"""Reservation ids are Canvas ids, which pass 2**31 on a sharded Canvas (global ids such as
170000000000042): 64-bit columns. SQLite's INTEGER is 64-bit already; PostgreSQL's was not
(``integer out of range`` when a sharded reservation was aliased or re-booked).

Revision ID: 0008
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
# 0007 is being written on another branch: when it is merged, this revises it (one head).
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = (
    ("reservation_aliases", "reservation_id", False),
    ("writeback_journal", "new_reservation_id", True),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite: INTEGER holds 64 bits; nothing to change
    for table, column, nullable in COLUMNS:
        op.alter_column(
            table, column, type_=sa.BigInteger, existing_type=sa.Integer, existing_nullable=nullable
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, nullable in COLUMNS:
        op.alter_column(
            table, column, type_=sa.Integer, existing_type=sa.BigInteger, existing_nullable=nullable
        )
