"""A replica outlives a PostgreSQL restart: its job worker (and the dispatcher it runs)
comes back once the database does, and the accounts are synced again. All real processes:
a private PostgreSQL this test restarts, the simulator, one ``calbridge run`` replica."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.helpers import postgres
from tests.helpers.replicas import cluster_config, replicas, sim_world

USERS = 10


@pytest.fixture
def own_pg() -> Iterator[postgres.Cluster]:
    with postgres.cluster() as pg:
        yield pg


def synced_since(dsn: str, since: float) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM cluster_schedule WHERE last_outcome = 'ok' "
            "AND last_sync_at > to_timestamp(%s) AT TIME ZONE 'UTC'",
            (since,),
        ).fetchone()
    return int(row[0]) if row else 0


def wait_synced(dsn: str, since: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        try:
            done = synced_since(dsn, since)
        except psycopg.OperationalError:
            done = 0  # the database is still starting
        if done == USERS:
            return
        time.sleep(0.2)
    raise AssertionError(f"only {done} of {USERS} accounts synced again within {timeout}s")


def test_a_replica_syncs_again_after_postgresql_restarts(
    own_pg: postgres.Cluster, tmp_path: Path
) -> None:
    with own_pg.database() as url, sim_world(USERS, 1, 1) as sim:
        dsn = own_pg.dsn(url.rsplit("/", 1)[1])
        config = cluster_config(
            tmp_path,
            url,
            sim,
            interval="1h",
            feeds=set(range(USERS)),
            caldav={},
            cluster='dispatch_every = "1s"\nheartbeat = "1s"\nstalled_after = "3s"\n',
        )
        with replicas(config, tmp_path, 1) as (replica,):
            wait_synced(dsn, 0.0, timeout=60)
            own_pg.restart(down=2.0)  # every connection cut; refused while it is down
            restarted = time.time()
            with psycopg.connect(dsn) as conn:
                conn.execute("UPDATE cluster_schedule SET due_at = now() AT TIME ZONE 'UTC'")
            # back within the worker's restart backoff (1, 2, 4 s …) + a dispatch + the syncs
            wait_synced(dsn, restarted, timeout=45)
            assert replica.proc.poll() is None, replica.log.read_text()[-3000:]
        log = replica.log.read_text(errors="replace")
        assert "job worker stopped" in log  # it did notice, and came back
