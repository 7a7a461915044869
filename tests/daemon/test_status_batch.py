"""Poll times written together: one transaction for many accounts, within the delay or at the
size bound, and never after a later write of the same account's status."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from bridge.daemon.status_batch import StatusBatch
from bridge.state import StateStore, open_state

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[StateStore, list[str]]]:
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite3'}")
    writes: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            writes.append(statement)

    event.listen(state.engine, "before_cursor_execute", record)
    yield state, writes
    state.close()


async def test_many_accounts_in_one_statement_within_the_delay(
    store: tuple[StateStore, list[str]],
) -> None:
    state, writes = store
    batch = StatusBatch(state.record_poll_successes, max_delay=0.2)
    for n in range(50):
        await batch.add(f"u{n}", NOW + timedelta(seconds=n))
    assert writes == [] and state.account_statuses() == {}
    await asyncio.sleep(0.6)  # the timer writes them: nobody has to call flush
    assert len(writes) == 1 and batch.writes == 1
    statuses = state.account_statuses()
    assert len(statuses) == 50
    assert statuses["u49"].last_success_at == NOW + timedelta(seconds=49)
    await batch.aclose()


async def test_the_size_bound_writes_at_once(store: tuple[StateStore, list[str]]) -> None:
    state, writes = store
    batch = StatusBatch(state.record_poll_successes, max_size=10, max_delay=60)
    for n in range(10):
        await batch.add(f"u{n}", NOW)
    assert len(writes) == 1 and len(state.account_statuses()) == 10
    await batch.add("late", NOW)
    await batch.aclose()  # what waits is written when the daemon stops
    assert "late" in state.account_statuses()


async def test_a_failure_after_a_waiting_success_is_recorded_after_it(
    store: tuple[StateStore, list[str]],
) -> None:
    state, _ = store
    batch = StatusBatch(state.record_poll_successes, max_delay=60)
    state.record_poll_failure("alice", NOW - timedelta(minutes=5), "down")
    await batch.add("alice", NOW)  # resets the failures once written
    await batch.before_write("alice")  # what the cycle does before recording a failure
    assert not batch.waiting("alice")
    state.record_poll_failure("alice", NOW + timedelta(minutes=5), "down again")
    await batch.aclose()
    status = state.account_statuses()["alice"]
    assert status.last_success_at == NOW
    assert status.consecutive_failures == 1  # not reset by a success written late


async def test_a_failed_write_keeps_what_waits() -> None:
    written: list[dict[str, datetime]] = []
    fail = [True]

    def write(polled: Any) -> None:
        if fail[0]:
            raise OSError("disk full")
        written.append(dict(polled))

    batch = StatusBatch(write, max_delay=60)
    await batch.add("alice", NOW)
    with pytest.raises(OSError):
        await batch.flush()
    assert batch.waiting("alice")
    fail[0] = False
    await batch.aclose()
    assert written == [{"alice": NOW}]
