"""A replica outlives a PostgreSQL restart: its job worker (and the dispatcher it runs)
comes back once the database does, and the accounts are synced again. All real processes:
a private PostgreSQL this test restarts, the simulator, one ``calbridge run`` replica."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
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


class HealthWatch:
    """Reads a replica's /healthz every 0.1 s in a thread; ``seen`` keeps each scheduler
    component it reported."""

    def __init__(self, admin_url: str) -> None:
        self.url = f"{admin_url}/healthz"
        self.seen: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                body = httpx.get(self.url, timeout=2).json()
                self.seen.append(body["components"]["scheduler"])
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            self._stop.wait(0.1)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


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
            admin = f"http://127.0.0.1:{replica.admin_port}"
            with HealthWatch(admin) as health:
                # every connection cut; refused while it is down, longer than the first
                # restart attempts (1, 2 s), so the worker waits 4 s more after it is back
                own_pg.restart(down=5.0)
                restarted = time.time()
                with psycopg.connect(dsn) as conn:
                    conn.execute("UPDATE cluster_schedule SET due_at = now() AT TIME ZONE 'UTC'")
                # back within the worker's restart backoff (1, 2, 4 s …) + a dispatch + syncs
                wait_synced(dsn, restarted, timeout=45)
                # a restarted worker counts as up once it has run WORKER_UP_AFTER (2 s)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and health.seen[-1:] != [{"running": True}]:
                    time.sleep(0.1)
            assert replica.proc.poll() is None, replica.log.read_text()[-3000:]
            # /healthz said so while the worker waited to start again, and is fine after
            down = [c for c in health.seen if not c["running"]]
            assert down, health.seen
            assert all("job worker stopped" in c.get("error", "") for c in down), down
            assert health.seen[-1] == {"running": True}, health.seen[-5:]
        log = replica.log.read_text(errors="replace")
        assert "job worker stopped" in log  # it did notice, and came back
