"""The state store on SQLite and on PostgreSQL (``state_url`` runs each test on both): round
trips, migrations that keep data, leases across processes, journal idempotency, and consistency
after kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from bridge.errors import SetupError
from bridge.mapping import EventVersion
from bridge.model.feed import PublishedFeed
from bridge.model.status import ItemStatus
from bridge.state import open_state
from bridge.state.db import make_engine, upgrade
from bridge.state.inspect import inspect_state
from bridge.state.journal import Begun, EntryState, Limits

T = datetime(2026, 3, 2, 12, tzinfo=UTC)
HEAD = inspect_state("sqlite://").expected  # the newest revision
SHARDED = 170000000000042  # a global id of a sharded Canvas: past 2**31


def test_round_trips(state_url: str) -> None:
    state = open_state(state_url)
    assert state.save_snapshot("alice", '{"a": 1}', T) is True
    assert state.save_snapshot("alice", '{"a": 1}', T) is False
    assert state.load_snapshot("alice") == '{"a": 1}'
    state.record_poll_failure("alice", T, "Canvas answered 503")
    assert state.record_poll_failure("alice", T, "again") == 2
    state.record_poll_success("alice", T + timedelta(minutes=5))
    status = state.account_statuses()["alice"]
    assert status.consecutive_failures == 0 and status.last_success_at == T + timedelta(minutes=5)
    secret = state.feed_secret("alice")
    assert state.feed_secret("alice") == secret and len(secret) >= 32
    assert state.rotate_feed_secret("alice") != secret
    versions = {"u": EventVersion("u", "h", 3, T, T)}
    feed = PublishedFeed.build(
        "alice",
        "Alice",
        b"BEGIN:VCALENDAR",
        refreshed_at=T,
        last_modified=T,
        event_count=1,
        includes=("conferences",),
    )
    state.save_feed(feed, versions)
    assert state.load_versions("feed:alice") == versions
    assert state.load_feeds() == [feed]  # the same record comes back, ready to serve
    assert state.load_feeds()[0].last_modified.tzinfo is not None
    item = ItemStatus("u", "/cal/u.ics", '"1"', "h", "BEGIN:VCALENDAR")
    state.caldav.apply("phone", [item], [])
    state.caldav.set_sync_token("phone", "tok")
    assert state.caldav.load("phone") == {"u": item} and state.caldav.sync_token("phone") == "tok"
    state.caldav.apply("phone", [], ["u"])
    assert state.caldav.load("phone") == {}
    state.caldav.hide("phone", "conf", "h1")
    assert state.caldav.hidden("phone") == {"conf": "h1"}
    state.journal.set_alias("alice", 1050, "canvas-reservation-1013@x")
    assert state.journal.aliases("alice") == {1050: "canvas-reservation-1013@x"}
    # Canvas ids of a sharded Canvas (PostgreSQL's integer stopped at 2**31 before 0008)
    state.journal.set_alias("alice", SHARDED, "canvas-reservation-1014@x")
    assert state.journal.aliases("alice")[SHARDED] == "canvas-reservation-1014@x"
    begun = state.journal.begin(
        key="rebook",
        account_id="alice",
        target_id="phone",
        uid="u",
        action="rebook",
        params={"slot": SHARDED},
        limits=Limits(per_minute=5, per_day=50),
    )
    state.journal.finish(begun.entry.id, EntryState.APPLIED, "re-booked", SHARDED + 1)
    assert state.journal.recent(1)[0].new_reservation_id == SHARDED + 1


def test_save_poll_writes_the_snapshot_only_when_what_canvas_said_changed(
    state_url: str,
) -> None:
    """One transaction per successful poll: the status always, the snapshot only when its
    hash moved (an upsert whose update is skipped when the hash is the same, on both backends)."""
    state = open_state(state_url)
    assert state.save_poll("alice", '{"a": 1}', "h1", T) is True
    state.record_poll_failure("alice", T + timedelta(minutes=1), "Canvas answered 503")
    assert state.save_poll("alice", '{"a": 1}', "h1", T + timedelta(minutes=2)) is False
    assert state.load_snapshot("alice") == '{"a": 1}'
    status = state.account_statuses()["alice"]
    assert status.last_success_at == T + timedelta(minutes=2)
    assert status.consecutive_failures == 0 and status.last_error == "Canvas answered 503"
    assert state.save_poll("alice", '{"a": 2}', "h2", T + timedelta(minutes=3)) is True
    assert state.load_snapshot("alice") == '{"a": 2}'
    assert state.save_poll("bob", '{"b": 1}', "h1", T) is True  # the same hash, another account
    assert state.load_snapshot("alice") == '{"a": 2}' and state.load_snapshot("bob") == '{"b": 1}'
    feed = PublishedFeed.build(
        "alice", "Alice", b"BEGIN:VCALENDAR", refreshed_at=T, last_modified=T, event_count=2
    )
    two = {u: EventVersion(u, "h", 1, T, T) for u in ("u1", "u2")}
    state.save_feed(feed, two)
    state.save_feed(feed, {"u3": EventVersion("u3", "h", 1, T, T)})
    assert set(state.load_versions("feed:alice")) == {"u3"}
    state.save_feed(feed, {})
    assert state.load_versions("feed:alice") == {} and len(state.load_feeds()) == 1
    state.close()


def test_journal_is_idempotent_and_counts_the_shared_rate_limit(state_url: str) -> None:
    state = open_state(state_url)
    limits = Limits(per_minute=2, per_day=3)

    def begin(key: str, params: dict[str, int] | None = None, now: datetime | None = None) -> Begun:
        return state.journal.begin(
            key=key,
            account_id="a",
            target_id="t",
            uid=f"u-{key}",
            action="cancel",
            params=params or {"reservation_id": 5},
            limits=limits,
            now=now,
        )

    first = begin("k1")
    again = begin("k1", {})
    assert first.send and not again.send and again.entry.id == first.entry.id
    assert again.entry.params == {"reservation_id": 5} and again.entry.state == EntryState.PENDING
    assert [e.id for e in state.journal.pending()] == [first.entry.id]
    state.journal.finish(first.entry.id, EntryState.APPLIED, "cancelled in Canvas")
    assert state.journal.pending() == [] and state.journal.recent()[0].state == "applied"
    assert not begin("k1").send  # applied: never sent again
    with pytest.raises(ValueError, match="not a final"):
        state.journal.finish(first.entry.id, EntryState.PENDING, "")
    # the per-minute cap counts what was sent by any process sharing the database
    assert begin("k2").send
    limited = begin("k3")
    assert not limited.send and limited.limited == "at most 2 write-backs a minute"
    assert limited.entry.state == EntryState.DEFERRED  # visible, and sent when allowed
    assert [e.idempotency_key for e in state.journal.open_entries()] == ["k2", "k3"]
    later = datetime.now(UTC) + timedelta(minutes=2)
    sent = begin("k3", now=later)
    assert sent.send
    capped = begin("k4", now=later + timedelta(minutes=2))
    assert capped.limited == "at most 3 write-backs a day"
    # an edit undone before it was sent is closed, not left pending forever
    assert state.journal.supersede("t", keep=set()) == 1
    assert all(e.state == EntryState.PENDING for e in state.journal.open_entries())


def test_upgrade_keeps_data(state_url: str) -> None:
    engine = make_engine(state_url)
    upgrade(engine, "0001")
    with engine.begin() as con:
        con.execute(
            text(
                "INSERT INTO feed_secrets (feed_id, secret, created_at) VALUES ('alice', 'kept-secret-value-123456', '2026-03-02 12:00:00')"
            )
        )
    engine.dispose()
    state = open_state(state_url)
    assert state.feed_secret("alice") == "kept-secret-value-123456"
    with state.engine.connect() as con:
        assert con.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD


def test_bad_urls_are_setup_errors_naming_state_url(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match=r"^state\.url: "):
        open_state("not a url")
    blocked = tmp_path / "ro"
    blocked.mkdir()
    blocked.chmod(0o500)
    if os.geteuid() != 0:  # root can write anywhere
        with pytest.raises(SetupError, match="not writable"):
            open_state(f"sqlite:///{blocked / 'x' / 's.sqlite3'}")


LEASE_WORKER = """
import sys, time
from datetime import timedelta
from bridge.state import open_state
state = open_state(sys.argv[1])
got = state.acquire_lease("poll:alice", sys.argv[2], timedelta(seconds=30))
print("got" if got else "busy", flush=True)
time.sleep(float(sys.argv[3]))
"""


def test_lease_across_processes(state_url: str) -> None:
    db = state_url
    open_state(db).close()
    first = subprocess.Popen(
        [sys.executable, "-c", LEASE_WORKER, db, "p1", "3"], stdout=subprocess.PIPE, text=True
    )
    assert first.stdout is not None and first.stdout.readline().strip() == "got"
    second = subprocess.run(
        [sys.executable, "-c", LEASE_WORKER, db, "p2", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.stdout.strip() == "busy"
    first.wait()
    state = open_state(db)
    assert (
        state.acquire_lease("poll:alice", "p2", timedelta(seconds=30)) is False
    )  # p1's lease is still valid
    state.release_lease("poll:alice", "p1")
    assert state.acquire_lease("poll:alice", "p2", timedelta(seconds=30)) is True


WRITER = """
import sys
from datetime import UTC, datetime
from bridge.mapping import EventVersion
from bridge.model.feed import PublishedFeed
from bridge.state import open_state
state = open_state(sys.argv[1])
t = datetime(2026, 3, 2, 12, tzinfo=UTC)
for i in range(100000):
    versions = {f"u{j}": EventVersion(f"u{j}", f"h{i}", i, t, t) for j in range(50)}
    body = f"body {i}.".encode() * 200
    feed = PublishedFeed.build("alice", "A", body, refreshed_at=t, last_modified=t, event_count=50)
    state.save_feed(feed, versions)
    if i == 5:
        print("writing", flush=True)
"""


def test_kill_9_while_writing_leaves_old_or_new_state(state_url: str) -> None:
    db = state_url
    open_state(db).close()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, db], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
    time.sleep(1.0)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    if db.startswith("sqlite:///"):
        with sqlite3.connect(db.removeprefix("sqlite:///")) as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    state = open_state(db)
    feed = state.load_feeds()[0]
    iteration = int(feed.body.split(b".", 1)[0].removeprefix(b"body "))
    versions = state.load_versions("feed:alice")
    assert len(versions) == 50 and {v.sequence for v in versions.values()} == {iteration}
    assert feed.body == f"body {iteration}.".encode() * 200
