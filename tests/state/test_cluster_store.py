"""Cluster mode's rows (revision 0006) on SQLite and PostgreSQL: the dispatcher's claims, the
jobs' records, the replicas; and the advisory lock one-off syncs and replicas share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from bridge.state import open_state
from bridge.state.cluster import account_lock_key

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
LOST = timedelta(minutes=10)


def every_minute(now: datetime) -> datetime:
    return now + MINUTE


def test_claims_once_per_interval_never_while_in_flight(state_url: str) -> None:
    state = open_state(state_url)
    try:
        store = state.cluster
        due = {"a": every_minute, "b": every_minute}
        first = store.claim_due(NOW, due, set())
        assert sorted(d.account_id for d in first) == ["a", "b"]  # new: due at once
        assert store.claim_due(NOW + MINUTE / 2, due, {"a", "b"}) == []
        # a's job ran; b's is still queued at a's next due time: only a is claimed again
        store.record_sync("a", NOW + timedelta(seconds=5), "r1", "ok", NOW + MINUTE)
        again = store.claim_due(NOW + MINUTE, due, {"b"})
        assert [(d.account_id, d.due_at) for d in again] == [("a", NOW + MINUTE)]
        # however long b's job waits or runs, b is not claimed twice
        assert store.claim_due(NOW + LOST, due, {"a", "b"}) == []
        # b's job is gone without recording (its replica died before queueing it, or it
        # failed for good): b is claimed again at the next dispatch, a (in flight) is not
        assert [d.account_id for d in store.claim_due(NOW + LOST, due, {"a"})] == ["b"]
        schedule = store.schedule()
        assert schedule["a"].last_sync_by == "r1" and schedule["a"].last_outcome == "ok"
        # an account no longer configured leaves the schedule
        store.claim_due(NOW + LOST, {"a": every_minute}, set())
        assert set(store.schedule()) == {"a"}
    finally:
        state.close()


def test_due_now_and_postpone(state_url: str) -> None:
    state = open_state(state_url)
    try:
        store = state.cluster
        due = {"a": every_minute}
        store.claim_due(NOW, due, set())
        store.record_sync("a", NOW, "r1", "ok", NOW + MINUTE)
        store.due_now(["a"], NOW + timedelta(seconds=10))
        assert store.schedule()["a"].due_at == NOW + timedelta(seconds=10)
        store.postpone("a", NOW + timedelta(hours=1))
        assert store.schedule()["a"].due_at == NOW + timedelta(hours=1)
        store.postpone("a", NOW)  # never earlier
        assert store.schedule()["a"].due_at == NOW + timedelta(hours=1)
    finally:
        state.close()


def test_replicas_are_recorded_and_forgotten(state_url: str) -> None:
    state = open_state(state_url)
    try:
        store = state.cluster
        store.replica_seen("host:1", "http://127.0.0.1:8001", 7, NOW, NOW)
        store.replica_seen("host:2", "http://127.0.0.1:8002", None, NOW, NOW + MINUTE)
        store.replica_seen("host:1", "http://127.0.0.1:8001", 9, NOW, NOW + MINUTE)
        assert [(r.name, r.worker_id) for r in store.replicas()] == [
            ("host:1", 9),
            ("host:2", None),
        ]
        store.replica_gone("host:2")
        assert store.forget_replicas(NOW + 2 * MINUTE) == 1
        assert list(store.replicas()) == []
    finally:
        state.close()


def test_advisory_lock_is_exclusive_and_released(pg_url: str) -> None:
    one, two = open_state(pg_url), open_state(pg_url)
    try:
        key = account_lock_key("alice")
        assert key == account_lock_key("alice") != account_lock_key("bob")
        held = one.try_advisory_lock(key)
        assert held is not None
        assert two.try_advisory_lock(key) is None
        other = two.try_advisory_lock(account_lock_key("bob"))
        assert other is not None
        two.release_advisory_lock(other, account_lock_key("bob"))
        one.release_advisory_lock(held, key)
        again = two.try_advisory_lock(key)
        assert again is not None
        two.release_advisory_lock(again, key)
    finally:
        one.close()
        two.close()


def test_the_job_engine_schema_comes_with_calbridges_on_postgresql(pg_url: str) -> None:
    state = open_state(pg_url)
    try:
        with state.engine.connect() as conn:
            assert conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar()
        assert state.is_postgresql
    finally:
        state.close()
    open_state(pg_url).close()  # opened again: already there, nothing done


def test_sqlite_has_no_job_engine(tmp_path: Path) -> None:
    state = open_state(f"sqlite:///{tmp_path}/s.sqlite3")
    try:
        assert not state.is_postgresql
        with state.engine.connect() as conn:
            names = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master"))}
        assert "cluster_schedule" in names and "procrastinate_jobs" not in names
    finally:
        state.close()
