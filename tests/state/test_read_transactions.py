"""Reads made every cycle do not take SQLite's write lock: with another process holding it
(a one-off ``calbridge sync``, another account's save), they answer at once instead of
queueing behind the writer; writes still take the lock first (BEGIN IMMEDIATE)."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event

from bridge.state import open_state


def test_a_cycle_read_answers_while_another_connection_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite3"
    state = open_state(f"sqlite:///{path}")
    begins: list[str] = []
    event.listen(
        state.engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_rest: (
            begins.append(statement) if statement.startswith("BEGIN") else None
        ),
    )
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the writer, mid-transaction
        started = time.monotonic()
        assert state.journal.aliases("alice") == {}
        assert time.monotonic() - started < 2  # busy_timeout is 10 s: it did not wait
        other.execute("ROLLBACK")
        state.record_poll_success("alice", datetime.now(UTC))
    finally:
        other.close()
        state.close()
    assert begins == ["BEGIN", "BEGIN IMMEDIATE"]
