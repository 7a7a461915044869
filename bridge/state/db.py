"""Opening the state database: SQLite (WAL) by default, PostgreSQL by URL; schema upgrades.

The schema is brought to the newest Alembic revision every time the database is opened, so an
upgrade of calbridge keeps (and migrates) the data of the previous version. On PostgreSQL
several replicas may open the database at once: the upgrade runs under an advisory lock, so one
upgrades and the others find the schema at head (:func:`upgrade`, ``calbridge db upgrade``).

Concurrency: on SQLite every transaction takes the write lock at BEGIN, so two processes never
interleave. PostgreSQL runs READ COMMITTED transactions side by side, so a method that reads,
then writes (get-or-create, a journal entry's state, a lease) first calls :func:`serialize`
with the names of what it changes: a transaction-scoped advisory lock (a no-op on SQLite), after
which its reads see what the previous holder committed. Lock waits end after 10 s, like
SQLite's busy timeout, as :class:`~bridge.errors.StateUnavailable`.

The database holds feed secrets, names, e-mail addresses and comments: a new SQLite file is
created 0600 (SQLite gives its -wal and -shm files the same mode) and an existing one readable
by others is tightened. "Locked", "disk full" and I/O errors become
:class:`~bridge.errors.StateUnavailable` here, at the one boundary every query passes, so they
are reported as what they are and not as a config error or an internal error.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import select
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, OperationalError
from sqlalchemy.orm import Session

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
_PG_LOCKED = "55P03"
# How long a PostgreSQL transaction waits for a lock (a row, an advisory lock) before giving up:
# SQLite's busy timeout, so both backends fail alike.
LOCK_TIMEOUT_MS = 10_000
# The advisory lock (session scope) held while the schema is upgraded: one replica at a time.
UPGRADE_LOCK = "calbridge:schema-upgrade"


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
    if sqlstate == _PG_LOCKED:
        return _UNAVAILABLE["database is locked"]
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


def shown_url(url: str) -> str:
    """``url`` as an error may show it: a password in it is replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if sep and at and ":" in userinfo:
        return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
    return url


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        raise SetupError(
            f"{shown_url(url)!r} is not a database URL "
            "(e.g. sqlite:////var/lib/calbridge/state.sqlite3)",
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
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        # The password, when not in the URL, comes from libpq: PGPASSWORD, PGPASSFILE (or
        # ?passfile=), ~/.pgpass. application_name shows which process holds what in
        # pg_stat_activity.
        connect_args = {
            "application_name": "calbridge",
            "options": f"-c lock_timeout={LOCK_TIMEOUT_MS}",
        }
    try:
        engine = create_engine(parsed, connect_args=connect_args)
    except Exception as exc:  # e.g. a missing driver for the scheme
        raise SetupError(
            f"cannot use this database: {type(exc).__name__}: {exc}", setting=SETTING
        ) from None
    event.listen(engine, "checkout", _alive_at_checkout)
    event.listen(engine, "handle_error", _translate_error)
    return engine


def _alive_at_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pool ``checkout`` hook: refuse a pooled connection the server has closed, so the pool
    opens a new one instead of the next statement failing (a PostgreSQL restart or failover,
    an idle timeout). It replaces ``pool_pre_ping``, a ``SELECT 1`` round trip (and a
    transaction) before every transaction, by a look at the socket: a server that ends a
    session sends its reason and closes, which makes an idle connection's socket readable;
    a healthy idle connection has nothing to read. (Something else to read — a notice — costs
    only a new connection.)"""
    raw = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    if getattr(raw, "closed", False) or getattr(raw, "broken", False):
        raise DisconnectionError("the connection was closed")
    try:
        fd = raw.fileno()
    except Exception:  # the driver cannot tell (closed meanwhile): the connection is unusable
        raise DisconnectionError("the connection has no socket") from None
    if _readable(fd):
        raise DisconnectionError("the server closed the connection (or sent something unasked)")


def _readable(fd: int) -> bool:
    """Whether a read on ``fd`` would not block (data or the peer's close), without waiting."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover - not Linux


def is_postgresql(bind: Session | Connection | Engine) -> bool:
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    return dialect.name == "postgresql"


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name`` (the same in every process)."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


def serialize(bind: Session | Connection, *names: str) -> None:
    """Make the current transaction the only one working on ``names`` until it ends.

    PostgreSQL: transaction-scoped advisory locks, taken in a fixed order (no deadlock between
    two callers naming the same things); later statements of the transaction then see what the
    previous holder committed. SQLite: nothing to do, BEGIN IMMEDIATE already serialises every
    transaction."""
    if not is_postgresql(bind):
        return
    for key in sorted({lock_key(name) for name in names}):
        bind.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def upsert(bind: Connection, table: Any, keys: list[str], **values: Any) -> None:
    """Run ``INSERT … ON CONFLICT (keys) DO UPDATE`` setting the other ``values``, in the
    dialect of ``bind`` (SQLite and PostgreSQL both have it): insert-or-update in one atomic
    statement, with no lock to take first."""
    bind.execute(_upsert(_dialect(bind), table, tuple(keys), tuple(values)), values)


def upsert_many(bind: Connection, table: Any, keys: list[str], rows: list[dict[str, Any]]) -> None:
    """:func:`upsert` of several rows (dicts with the same columns) in one statement."""
    if rows:
        bind.execute(_upsert(_dialect(bind), table, tuple(keys), tuple(rows[0])), rows)


def upsert_if_differs(
    bind: Connection, table: Any, keys: list[str], column: str, **values: Any
) -> bool:
    """:func:`upsert` that leaves an existing row alone when its ``column`` already holds the
    new value; True if it inserted or updated the row. (It asks with ``RETURNING``:
    psycopg's ``rowcount`` says -1 for such a statement.)"""
    statement = _upsert(_dialect(bind), table, tuple(keys), tuple(values), column)
    return bind.execute(statement, values).first() is not None


def insert_or_keep(bind: Connection, table: Any, keys: list[str], **values: Any) -> None:
    """``INSERT … ON CONFLICT (keys) DO NOTHING``: a row with these keys is kept as it is."""
    bind.execute(_insert_or_keep(_dialect(bind), table, tuple(keys), tuple(values)), values)


# The statements are built once per shape and reused: building one (its ``excluded`` alias,
# its column proxies, its cache key) cost more CPU than running it on SQLite.


def _dialect(bind: Connection) -> str:
    return "postgresql" if is_postgresql(bind) else "sqlite"


@functools.cache
def _upsert(
    dialect: str,
    table: Any,  # a mapped class (hashable)
    keys: tuple[str, ...],
    columns: tuple[str, ...],
    unless_same: str | None = None,
) -> Any:
    statement = _insert(dialect, table)
    changed = {k: statement.excluded[k] for k in columns if k not in keys}
    if unless_same is None:
        return statement.on_conflict_do_update(index_elements=keys, set_=changed)
    differs = getattr(table, unless_same) != statement.excluded[unless_same]
    return statement.on_conflict_do_update(
        index_elements=keys, set_=changed, where=differs
    ).returning(*(getattr(table, k) for k in keys))


@functools.cache
def _insert_or_keep(
    dialect: str, table: Any, keys: tuple[str, ...], columns: tuple[str, ...]
) -> Any:
    return _insert(dialect, table).on_conflict_do_nothing(index_elements=keys)


def _insert(dialect: str, table: type[Any]) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


# Schema upgrades run by `calbridge db upgrade` and on every open, in this order, under the
# upgrade lock, each with the connection (inside one transaction). calbridge's own Alembic
# migrations come first; other components (e.g. a job engine's schema) append theirs.
SchemaStep = Callable[[Connection, str], None]


def _alembic_step(connection: Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _job_engine_step(connection: Connection, revision: str) -> None:
    from bridge.state.engine_schema import install_job_engine

    install_job_engine(connection, revision)


SCHEMA_STEPS: list[SchemaStep] = [_alembic_step, _job_engine_step]


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the schema to ``revision`` (default: the newest), in one transaction; the
    Alembic revisions before and after (before None: the database was empty).

    On PostgreSQL a session-level advisory lock (:data:`UPGRADE_LOCK`) is held around it, so
    replicas starting together upgrade one after the other: the first does the work, the next
    find the schema at head (Alembic then does nothing). Waiting for that lock is not bounded
    by the 10 s lock timeout: a long migration is worth waiting for."""
    try:
        with engine.connect() as connection:
            postgres = is_postgresql(connection)
            if postgres:
                connection.execute(text("SET lock_timeout = 0"))
                connection.execute(
                    text("SELECT pg_advisory_lock(:key)"), {"key": lock_key(UPGRADE_LOCK)}
                )
                connection.commit()
            try:
                with connection.begin():
                    before = _revision(connection)
                    for step in SCHEMA_STEPS:
                        step(connection, revision)
                    after = _revision(connection)
            finally:
                if postgres:
                    connection.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(UPGRADE_LOCK)}
                    )
                    connection.execute(text(f"SET lock_timeout = {LOCK_TIMEOUT_MS}"))
                    connection.commit()
    except OperationalError as exc:
        raise SetupError(f"cannot open the state database: {exc.orig}", setting=SETTING) from None
    return before, after


def upgrade_database(url: str) -> tuple[str | None, str | None]:
    """Open ``url`` and bring its schema to the newest revision (under the upgrade lock);
    the revisions before and after (before None: the database was empty)."""
    engine = make_engine(url)
    try:
        return upgrade(engine)
    finally:
        engine.dispose()


def _revision(connection: Connection) -> str | None:
    """The Alembic revision the database is at (None: an empty database)."""
    return MigrationContext.configure(connection).get_current_revision()
