"""The first schema: snapshots, status, feeds, versions, CalDAV status, journal, leases.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_snapshots",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("snapshot_json", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("fetched_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "account_status",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("last_success_at", sa.DateTime, nullable=True),
        sa.Column("last_error_at", sa.DateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
    )
    op.create_table(
        "feed_secrets",
        sa.Column("feed_id", sa.String(64), primary_key=True),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "rendered_feeds",
        sa.Column("feed_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("etag", sa.String(80), nullable=False),
        sa.Column("last_modified", sa.DateTime, nullable=False),
        sa.Column("refreshed_at", sa.DateTime, nullable=False),
        sa.Column("event_count", sa.Integer, nullable=False),
        sa.Column("includes", sa.Text, nullable=False),
    )
    op.create_table(
        "event_versions",
        sa.Column("scope", sa.String(80), primary_key=True),
        sa.Column("uid", sa.String(255), primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("dtstamp", sa.DateTime, nullable=False),
        sa.Column("last_modified", sa.DateTime, nullable=False),
    )
    op.create_table(
        "caldav_items",
        sa.Column("target_id", sa.String(64), primary_key=True),
        sa.Column("uid", sa.String(255), primary_key=True),
        sa.Column("href", sa.Text, nullable=False),
        sa.Column("etag", sa.Text, nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("ics", sa.Text, nullable=False),
    )
    op.create_table(
        "caldav_tokens",
        sa.Column("target_id", sa.String(64), primary_key=True),
        sa.Column("token", sa.Text, nullable=True),
    )
    op.create_table(
        "hidden_events",
        sa.Column("target_id", sa.String(64), primary_key=True),
        sa.Column("uid", sa.String(255), primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "reservation_aliases",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("reservation_id", sa.Integer, primary_key=True),
        sa.Column("uid", sa.String(255), nullable=False),
    )
    op.create_table(
        "writeback_journal",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("target_id", sa.String(64), nullable=False),
        sa.Column("uid", sa.String(255), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index("ix_writeback_journal_state", "writeback_journal", ["state"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "leases",
        "writeback_journal",
        "reservation_aliases",
        "hidden_events",
        "caldav_tokens",
        "caldav_items",
        "event_versions",
        "rendered_feeds",
        "feed_secrets",
        "account_status",
        "account_snapshots",
    ):
        op.drop_table(table)
