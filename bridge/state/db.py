"""Opening the state database: SQLite (WAL) by default, PostgreSQL by URL; schema upgrades.

The schema is brought to the newest Alembic revision every time the database is opened, so an
upgrade of calbridge keeps (and migrates) the data of the previous version.

The database holds feed secrets, names, e-mail addresses and comments: a new SQLite file is
created 0600 (SQLite gives its -wal and -shm files the same mode) and an existing one readable
by others is tightened. "Locked", "disk full" and I/O errors become
:class:`~bridge.errors.StateUnavailable` here, at the one boundary every query passes, so they
are reported as what they are and not as a config error or an internal error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from bridge.errors import SetupError, StateUnavailable

log = logging.getLogger("bridge.state")

MIGRATIONS = Path(__file__).parent / "migrations"
SYNCHRONOUS = ("normal", "full")
# The setting a SetupError names: the one the database URL comes from (config, or the CLI's -c).
SETTING = "state.url"

# SQLite's messages (sqlite3 has no error codes before 3.11's sqlite_errorname) → what to say.
_UNAVAILABLE = {
    "database is locked": "the state database is locked by another process (waited 10s)",
    "database table is locked": "the state database is locked by another process (waited 10s)",
    "database or disk is full": "the disk holding the state database is full",
    "disk i/o error": "the state database cannot be read or written: disk I/O error",
}
# PostgreSQL SQLSTATE classes: 53 insufficient resources (disk full, out of memory), 55P03
# lock not available, 57P03 cannot connect now.
_PG_UNAVAILABLE = ("53", "55P03", "57P03")


def default_state_url(state_directory: str | None = None) -> str:
    """``$STATE_DIRECTORY/state.sqlite3`` under systemd, else ``./calbridge-state.sqlite3``."""
    directory = state_directory or os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    path = (
        Path(directory) / "state.sqlite3"
        if directory
        else Path("calbridge-state.sqlite3").resolve()
    )
    return f"sqlite:///{path}"


def with_synchronous(url: str, synchronous: str) -> str:
    """``url`` carrying ``[state] synchronous`` for :func:`make_engine` (SQLite only)."""
    if synchronous == "normal" or not url.startswith("sqlite"):
        return url
    return (
        make_url(url)
        .update_query_dict({"synchronous": synchronous})
        .render_as_string(hide_password=False)
    )


def unavailable_reason(exc: BaseException) -> str | None:
    """What to tell a person when ``exc`` (a DBAPI error) means the database is unusable now."""
    message = str(exc).lower()
    for needle, reason in _UNAVAILABLE.items():
        if needle in message:
            return reason
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    if sqlstate and sqlstate.startswith(_PG_UNAVAILABLE):
        return f"the state database is unavailable: {str(exc).splitlines()[0]}"
    return None


def _translate_error(context: ExceptionContext) -> None:
    """SQLAlchemy ``handle_error`` hook: raising here replaces the original exception."""
    reason = unavailable_reason(context.original_exception)
    if reason is not None:
        raise StateUnavailable(reason) from context.original_exception


def _pragmas(synchronous: str) -> Any:
    def apply(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a crash of the process loses nothing committed, but a power loss or an
        # OS crash may lose the last transactions (never corrupts). FULL fsyncs every commit
        # and survives power loss too, at the cost of a sync per transaction.
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    return apply


def _private_file(database: str) -> None:
    """Create the database file 0600 before SQLite opens it; tighten an existing one."""
    path = Path(database)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SetupError(f"cannot create {path}: {exc.strerror}", setting=SETTING) from None
    else:
        os.close(fd)
        return
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(OSError):
            mode = candidate.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO) and candidate.stat().st_uid == os.getuid():
                os.chmod(candidate, stat.S_IMODE(mode) & 0o700)
                log.warning("%s was readable by other users; now mode 0600", candidate)


READ_ONLY = "calbridge_read_only"  # execution option of a transaction that never writes


def _sqlite_begin(connection: Any) -> None:
    """Take the write lock at the start of every transaction: with two processes (the daemon
    and a one-off ``calbridge sync``) a deferred transaction that reads, then writes, would
    fail instead of waiting its turn. A transaction opened with :data:`READ_ONLY` only reads:
    it begins deferred and never waits for the write lock (under WAL readers do not block
    writers or each other), so the reads of many accounts' cycles no longer queue behind
    each other's writes."""
    if connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SetupError(
            f"{url!r} is not a database URL (e.g. sqlite:////var/lib/calbridge/state.sqlite3)",
            setting=SETTING,
        ) from None
    if parsed.get_backend_name() == "sqlite":
        synchronous = str(parsed.query.get("synchronous", "normal")).lower()
        if synchronous not in SYNCHRONOUS:
            raise SetupError(
                f"{synchronous!r} is not one of {', '.join(SYNCHRONOUS)}",
                setting="state.synchronous",
            )
        parsed = parsed.difference_update_query(["synchronous"])
        database = parsed.database or ""
        if database and database != ":memory:":
            parent = Path(database).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SetupError(
                    f"cannot create {parent}: {exc.strerror}", setting=SETTING
                ) from None
            if not os.access(parent, os.W_OK):
                raise SetupError(f"{parent} is not writable", setting=SETTING)
            _private_file(database)
        engine = create_engine(parsed, connect_args={"timeout": 10, "check_same_thread": False})
        event.listen(engine, "connect", _pragmas(synchronous))
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine, "handle_error", _translate_error)
        return engine
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except Exception as exc:  # e.g. a missing driver for the scheme
        raise SetupError(
            f"cannot use this database: {type(exc).__name__}: {exc}", setting=SETTING
        ) from None
    event.listen(engine, "handle_error", _translate_error)
    return engine


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest), in one transaction."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except OperationalError as exc:
        raise SetupError(f"cannot open the state database: {exc.orig}", setting=SETTING) from None
