"""Keep where discovery found each CalDAV calendar, so a fresh process syncs without
discovering it again (principal, home set and calendar listing: 4-6 requests).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "caldav_collections",
        sa.Column("target_id", sa.String(64), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("found_for", sa.String(64), nullable=False),
        sa.Column("syncs", sa.Boolean, nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    op.drop_table("caldav_collections")
