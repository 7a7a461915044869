"""The job engine's tables (procrastinate, cluster mode) beside calbridge's own, on PostgreSQL.

A step of :data:`bridge.state.db.SCHEMA_STEPS`: it runs after calbridge's migrations, in the
same transaction and under the same upgrade lock, every time the database is opened or
``calbridge db upgrade`` runs. It installs procrastinate's schema once (when its table is
missing); the pinned procrastinate version is the one whose schema is installed. SQLite:
nothing (cluster mode needs PostgreSQL).
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, text

log = logging.getLogger("bridge.state")


def install_job_engine(connection: Connection, revision: str) -> None:
    if connection.dialect.name != "postgresql" or revision != "head":
        return
    present = connection.execute(text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL"))
    if present.scalar():
        return
    from procrastinate.schema import SchemaManager

    # the raw driver connection, in this transaction: the schema is many statements, with no
    # parameters (its % signs are not placeholders)
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(SchemaManager.get_schema())
    finally:
        cursor.close()
    log.info("job engine: procrastinate's schema installed")
