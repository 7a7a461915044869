"""Alembic environment: run with a connection handed over by ``bridge.state.db.upgrade``."""

from __future__ import annotations

from alembic import context

from bridge.state.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
