"""The state database as something that holds secrets and can fail: created 0600, a full disk
and a lock (SQLite's, or a PostgreSQL lock held past the 10 s lock timeout) reported as what
they are (their own exit code), and the synchronous option."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event, text

from bridge.errors import StateUnavailable
from bridge.state import open_state

T = datetime(2026, 3, 2, 12, tzinfo=UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_and_wal_files_are_created_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "state.sqlite3"
        state = open_state(f"sqlite:///{db}")
        state.feed_secret("alice")
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        assert all(f.exists() for f in files)
        assert [mode(f) for f in files] == [0o600, 0o600, 0o600]
        state.close()
    finally:
        os.umask(old)


def test_an_existing_readable_database_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite3"
    open_state(f"sqlite:///{db}").close()
    db.chmod(0o644)
    open_state(f"sqlite:///{db}").close()
    assert mode(db) == 0o600


def test_disk_full_is_state_unavailable(tmp_path: Path) -> None:
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite3'}")
    state.engine.dispose()

    @event.listens_for(state.engine, "connect")
    def no_room(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count={pages}")  # as if the disk were full

    with pytest.raises(StateUnavailable, match="the disk holding the state database is full"):
        state.save_snapshot("alice", "x" * 500_000, T)
    assert StateUnavailable.exit_code not in (1, 2, 3, 4, 5, 6, 7, 8, 70)
    state.close()


def config_with_state(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "config.toml"
    (tmp_path / "token").write_text("x" * 20)
    config.write_text(f"""
[state]
url = "{url}"
[[accounts]]
id = "alice"
canvas_url = "https://canvas.example.edu"
token_file = "{tmp_path / "token"}"
[[feeds]]
id = "alice"
account = "alice"
""")
    return config


def rotate_secret(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "feeds", "rotate-secret", "alice", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_locked_database_is_state_unavailable_with_its_own_exit_code(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite3"
    config = config_with_state(tmp_path, f"sqlite:///{db}")
    open_state(f"sqlite:///{db}").close()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    out = rotate_secret(config)
    locker.execute("ROLLBACK")
    locker.close()
    assert out.returncode == StateUnavailable.exit_code == 9, out.stderr
    assert out.stderr.strip() == (
        "calbridge: the state database is locked by another process (waited 10s)"
    )
    # one 10 s wait, plus the CLI's start: ~8 s on this machine at load 8, over 20 s at 12
    assert time.monotonic() - started < 60


def test_a_postgresql_lock_held_too_long_is_state_unavailable(tmp_path: Path, pg_url: str) -> None:
    config = config_with_state(tmp_path, pg_url)
    state = open_state(pg_url)
    state.feed_secret("alice")
    state.close()
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as locker:  # another replica holding the table for a long time
        locker.execute("LOCK TABLE feed_secrets IN EXCLUSIVE MODE")
        started = time.monotonic()
        out = rotate_secret(config)
        waited = time.monotonic() - started
        locker.rollback()
    assert out.returncode == StateUnavailable.exit_code, out.stderr
    assert out.stderr.strip() == (
        "calbridge: the state database is locked by another process (waited 10s)"
    )
    assert 10 <= waited < 60  # the lock timeout, plus starting the CLI on a busy machine


@pytest.mark.parametrize(("option", "pragma"), [("normal", 1), ("full", 2)])
def test_synchronous_option(tmp_path: Path, option: str, pragma: int) -> None:
    from bridge.config import StateConfig

    url = StateConfig(url=f"sqlite:///{tmp_path / 's.sqlite3'}", synchronous=option).database_url()  # type: ignore[arg-type]
    state = open_state(url)
    with state.engine.connect() as connection:
        assert connection.execute(text("PRAGMA synchronous")).scalar() == pragma
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    state.close()
    assert not (tmp_path / "s.sqlite3?synchronous=full").exists()
