"""Look at a state database without changing it: for ``calbridge check``.

:func:`bridge.state.open_state` creates a missing database and upgrades an old schema, which is
right for the daemon and wrong for a check run by an administrator (as root, before the service
ever started). :func:`inspect_state` opens SQLite read-only (``mode=ro``, and ``immutable`` when
no other process has it open, so that no -wal/-shm file appears) and reads PostgreSQL inside a
transaction it rolls back; it only reads Alembic's revision table.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.request import pathname2url

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from bridge.state.db import MIGRATIONS, shown_url


class SchemaStatus(StrEnum):
    CURRENT = "current"  # at the newest revision this calbridge knows
    MISSING = "missing"  # no database yet; the daemon (or sync) creates it
    OUTDATED = "outdated"  # an older revision (or empty); the daemon upgrades it when it starts
    NEWER = "newer"  # a revision this calbridge does not know: written by a newer version
    UNREADABLE = "unreadable"  # cannot be opened or read


@dataclass(frozen=True)
class StateInspection:
    status: SchemaStatus
    where: str  # the file, or the URL without its password
    revision: str | None  # the database's Alembic revision
    expected: str  # the newest revision this calbridge knows
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the daemon can start on this database (creating or upgrading it)."""
        return self.status in (SchemaStatus.CURRENT, SchemaStatus.MISSING, SchemaStatus.OUTDATED)


def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def where(url: str) -> str:
    """Where ``url`` points, as calbridge shows it: the file, or the URL without its password."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        return shown_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return str(Path(parsed.database or "").resolve())
    return parsed.render_as_string(hide_password=True)


def inspect_state(url: str) -> StateInspection:
    """What the daemon would find at ``url``; creates, migrates and writes nothing."""
    scripts = _scripts()
    head = scripts.get_current_head() or ""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        return StateInspection(
            SchemaStatus.UNREADABLE, shown_url(url), None, head, "not a database URL"
        )
    engine: Engine
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database or "").resolve()
        where = str(path)
        if not path.exists():
            parent = _nearest_existing(path.parent)
            if not os.access(parent, os.W_OK):
                return StateInspection(
                    SchemaStatus.UNREADABLE, where, None, head, f"{parent} is not writable"
                )
            return StateInspection(SchemaStatus.MISSING, where, None, head)
        # A read-only reader of a WAL database still creates -wal and -shm files beside it (as
        # root, they would lock the service user out). Without a -wal file no process has the
        # database open, so it is read as immutable, which creates nothing.
        quiet = "" if Path(f"{path}-wal").exists() else "&immutable=1"
        uri = f"file:{pathname2url(str(path))}?mode=ro{quiet}"
        engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))
    else:
        where = parsed.render_as_string(hide_password=True)
        try:
            engine = create_engine(parsed)
        except Exception as exc:  # e.g. a missing driver for the scheme
            return StateInspection(SchemaStatus.UNREADABLE, where, None, head, str(exc))
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
            connection.rollback()
    except (SQLAlchemyError, sqlite3.Error) as exc:
        cause = getattr(exc, "orig", None) or exc
        return StateInspection(SchemaStatus.UNREADABLE, where, None, head, str(cause))
    finally:
        engine.dispose()
    if revision == head:
        return StateInspection(SchemaStatus.CURRENT, where, revision, head)
    known = {script.revision for script in scripts.walk_revisions()}
    if revision is None or revision in known:
        return StateInspection(SchemaStatus.OUTDATED, where, revision, head)
    return StateInspection(SchemaStatus.NEWER, where, revision, head)
