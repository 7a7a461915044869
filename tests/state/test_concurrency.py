"""Several processes on one state database (replicas on PostgreSQL; the daemon and a one-off
command on SQLite): what one reads and then writes is not interleaved with another's. On
PostgreSQL these failed before the store serialised them (duplicate-key errors, an entry sent
twice, a cap passed); each runs on both backends (``state_url``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from bridge.state import open_state
from bridge.state.journal import Begun, EntryState, Limits
from bridge.state.store import StateStore

R = TypeVar("R")
N = 8


def at_once(state_url: str, work: Callable[[StateStore, int], R]) -> list[R]:
    """``work`` run by N threads, each with its own store (its own connections), released
    together; the results in thread order."""
    stores = [open_state(state_url) for _ in range(N)]
    barrier = threading.Barrier(N)

    def run(i: int) -> R:
        barrier.wait()
        return work(stores[i], i)

    try:
        with ThreadPoolExecutor(N) as pool:
            return list(pool.map(run, range(N)))
    finally:
        for store in stores:
            store.close()


def begin(state: StateStore, key: str, limits: Limits, now: datetime | None = None) -> Begun:
    return state.journal.begin(
        key=key,
        account_id="a",
        target_id="t",
        uid=f"u-{key}",
        action="cancel",
        params={"reservation_id": 5},
        limits=limits,
        now=now,
    )


def test_a_new_feed_gets_one_secret_however_many_ask_at_once(state_url: str) -> None:
    open_state(state_url).close()
    secrets = at_once(state_url, lambda state, _i: state.feed_secret("alice"))
    assert len(set(secrets)) == 1
    assert open_state(state_url).feed_secret("alice") == secrets[0]


def test_a_deferred_write_back_is_sent_once_when_several_retry_it(state_url: str) -> None:
    state = open_state(state_url)
    limits = Limits(per_minute=1, per_day=100)
    assert begin(state, "k0", limits).send
    waiting = begin(state, "k1", limits)  # over the per-minute cap: deferred
    assert waiting.entry.state == EntryState.DEFERRED and not waiting.send
    later = datetime.now(UTC) + timedelta(minutes=5)
    answers = at_once(state_url, lambda s, _i: begin(s, "k1", limits, later))
    assert sum(a.send for a in answers) == 1
    assert {a.entry.id for a in answers} == {waiting.entry.id}


def test_the_rate_cap_holds_when_replicas_send_at_once(state_url: str) -> None:
    open_state(state_url).close()
    limits = Limits(per_minute=3, per_day=100)
    answers = at_once(state_url, lambda s, i: begin(s, f"k{i}", limits))
    assert sum(a.send for a in answers) == 3
    assert sum(a.limited == "at most 3 write-backs a minute" for a in answers) == N - 3


def test_one_holder_gets_a_new_lease(state_url: str) -> None:
    open_state(state_url).close()
    got = at_once(
        state_url, lambda s, i: s.acquire_lease("poll:alice", f"p{i}", timedelta(seconds=30))
    )
    assert sum(got) == 1


def test_status_and_snapshot_of_a_new_account_written_at_once(state_url: str) -> None:
    open_state(state_url).close()
    t = datetime(2026, 3, 2, 12, tzinfo=UTC)
    written = at_once(state_url, lambda s, i: s.save_poll("alice", f'{{"n": {i}}}', f"h{i}", t))
    assert all(written)  # each poll saw another's snapshot (or none): each wrote its own
    failures = at_once(state_url, lambda s, _i: s.record_poll_failure("bob", t, "503"))
    assert sorted(failures) == list(range(1, N + 1))  # no failure lost
    at_once(state_url, lambda s, _i: s.record_poll_success("carol", t))  # one atomic upsert
    state = open_state(state_url)
    assert state.account_statuses()["bob"].consecutive_failures == N
    assert state.account_statuses()["carol"].last_success_at == t
    assert state.load_snapshot("alice") is not None
