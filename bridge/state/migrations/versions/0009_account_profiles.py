"""Who each token belongs to (``/users/self``), shared by the replicas: a replica that syncs an
account for the first time reuses the profile another one fetched instead of asking Canvas
again. Rows are keyed by a keyed digest (HMAC-SHA256) of the Canvas URL and the credential,
never by the token; the key lives in ``state_keys`` (or is derived from the encryption key).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_profiles",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("profile_json", sa.Text, nullable=False),
        sa.Column("fetched_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "state_keys",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("state_keys")
    op.drop_table("account_profiles")
