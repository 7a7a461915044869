"""The state store across a PostgreSQL restart, on a private server this test restarts: the
pooled connections the server cut are replaced at checkout, so the first call after the
restart works; and the check costs no round trip (no extra transaction per checkout, as
``pool_pre_ping``'s ``SELECT 1`` did)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from bridge.state import StateStore, open_state
from tests.helpers import postgres

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def own_pg() -> Iterator[postgres.Cluster]:
    with postgres.cluster() as pg:
        yield pg


def transactions(dsn: str, state: StateStore) -> int:
    """Transactions committed in the database so far: the store's connections are closed
    first (a backend reports its counts when it ends)."""
    state.engine.dispose()
    with psycopg.connect(dsn) as conn:
        deadline = time.monotonic() + 10
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'calbridge'"
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "the store's sessions did not end"
            time.sleep(0.05)
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_restart_of_postgresql_costs_the_store_no_failed_call(own_pg: postgres.Cluster) -> None:
    with own_pg.database() as url:
        state = open_state(url)
        try:
            with state.session(), state.session(), state.session():
                pass  # three connections in the pool
            assert state.record_poll_failure("a", NOW, "first") == 1
            own_pg.restart()  # every pooled connection is cut
            assert state.record_poll_failure("a", NOW, "after the restart") == 2
            with state.session(), state.session(), state.session():
                pass  # the other cut connections are replaced too
            assert state.account_statuses()["a"].consecutive_failures == 2
        finally:
            state.close()


def test_a_checkout_costs_no_round_trip(own_pg: postgres.Cluster) -> None:
    with own_pg.database() as url:
        dsn = own_pg.dsn(url.rsplit("/", 1)[1])
        state = open_state(url)
        try:
            state.record_poll_failure("a", NOW, "warm")
            before = transactions(dsn, state)
            for n in range(20):
                state.load_snapshot("a")
                state.record_poll_failure("a", NOW, f"failure {n}")
            # 40 transactions and the pool's first connect; pool_pre_ping made it 80
            assert transactions(dsn, state) - before <= 45
        finally:
            state.close()
