"""Institution mode: people who connected themselves with Canvas sign-in, their feeds and
CalDAV calendars. Tokens and passwords are stored encrypted (Fernet, bridge/state/vault.py).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("canvas_host", sa.String(255), nullable=False),
        sa.Column("canvas_user_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("connection", sa.String(24), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_sync_at", sa.DateTime, nullable=True),
        sa.Column("access_token", sa.Text, nullable=False),
        sa.Column("refresh_token", sa.Text, nullable=True),
        sa.Column("token_expires_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("canvas_host", "canvas_user_id"),
        sqlite_autoincrement=True,  # ids never given again (see schema.PersonRow)
    )
    for table, columns in (
        (
            "person_feeds",
            [
                sa.Column("secret", sa.String(128), nullable=False),
                sa.Column("include", sa.Text, nullable=False),
                sa.Column("timezone", sa.String(64), nullable=True),
                sa.Column("name", sa.Text, nullable=True),
            ],
        ),
        (
            "person_targets",
            [
                sa.Column("url", sa.Text, nullable=False),
                sa.Column("username", sa.Text, nullable=False),
                sa.Column("password", sa.Text, nullable=False),
                sa.Column("calendar", sa.Text, nullable=False),
                sa.Column("include", sa.Text, nullable=False),
                sa.Column("timezone", sa.String(64), nullable=True),
                sa.Column("writeback", sa.Boolean, nullable=False),
            ],
        ),
    ):
        op.create_table(
            table,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column(
                "person_id",
                sa.Integer,
                sa.ForeignKey("people.id", ondelete="CASCADE"),
                nullable=False,
            ),
            *columns,
            sa.Column("created_at", sa.DateTime, nullable=False),
            sqlite_autoincrement=True,
        )
        op.create_index(f"ix_{table}_person_id", table, ["person_id"])


def downgrade() -> None:
    op.drop_table("person_targets")
    op.drop_table("person_feeds")
    op.drop_table("people")
