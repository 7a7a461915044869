"""Opening the state database: SQLite (WAL) by default, PostgreSQL by URL; schema upgrades.

The schema is brought to the newest Alembic revision every time the database is opened, so an
upgrade of calbridge keeps (and migrates) the data of the previous version.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from bridge.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"


def default_state_url(state_directory: str | None = None) -> str:
    """``$STATE_DIRECTORY/state.sqlite3`` under systemd, else ``./calbridge-state.sqlite3``."""
    directory = state_directory or os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    path = (
        Path(directory) / "state.sqlite3"
        if directory
        else Path("calbridge-state.sqlite3").resolve()
    )
    return f"sqlite:///{path}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a crash loses no committed data
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    """Take the write lock at the start of every transaction: with two processes (the daemon
    and a one-off ``calbridge sync``) a deferred transaction that reads, then writes, would
    fail instead of waiting its turn."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"{url!r} is not a database URL (e.g. sqlite:////var/lib/calbridge/state.sqlite3)",
            key="state.url",
        ) from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            parent = Path(database).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create {parent}: {exc.strerror}", key="state.url"
                ) from None
            if not os.access(parent, os.W_OK):
                raise ConfigError(f"{parent} is not writable", key="state.url")
        engine = create_engine(url, connect_args={"timeout": 10, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except Exception as exc:  # e.g. a missing driver for the scheme
        raise ConfigError(
            f"cannot use this database: {type(exc).__name__}: {exc}", key="state.url"
        ) from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest), in one transaction."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except OperationalError as exc:
        raise ConfigError(f"cannot open the state database: {exc.orig}", key="state.url") from None
