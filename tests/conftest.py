"""Fixtures shared by the whole suite: the Canvas simulator served over real HTTP, the client
corpus, the daemon under test (for tests/daemon and tests/deploy), and a real PostgreSQL
(``pg_cluster`` per test process, ``pg_url`` a fresh database per test). Helpers live in
tests/helpers."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.simulator.app import create_app
from bridge.simulator.sample import SAMPLE_TOKENS, sample_world
from bridge.simulator.server import serve_in_thread
from tests.helpers import postgres
from tests.helpers.clients import CLIENTS, ClientFile, catalogue
from tests.helpers.daemon import Running
from tests.helpers.sim import SAMPLE_NOW, Sim


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[postgres.Cluster]:
    """A private PostgreSQL cluster for this test process (each xdist worker starts its own)."""
    with postgres.cluster() as running:
        yield running


@pytest.fixture
def pg_url(pg_cluster: postgres.Cluster) -> Iterator[str]:
    """``postgresql+psycopg://calbridge@127.0.0.1:PORT/<db>``: a fresh empty database per test."""
    with pg_cluster.database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty state database on each backend: a SQLite file under ``tmp_path`` (in a
    subdirectory the store creates), or a fresh database on the test process's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sub' / 'state.sqlite3'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def sim() -> Iterator[Sim]:
    world = sample_world(SAMPLE_NOW)
    with serve_in_thread(create_app(world, control=True)) as server:
        yield Sim(world, server, dict(SAMPLE_TOKENS))


@pytest.fixture
def live_sim() -> Iterator[Sim]:
    """Sample data around the real current time, for tests of the daemon (which reads the clock)."""
    world = sample_world()
    with serve_in_thread(create_app(world, control=True)) as server:
        yield Sim(world, server, dict(SAMPLE_TOKENS))


@pytest.fixture(scope="session")
def client_corpus() -> dict[str, ClientFile]:
    """The client-written calendar objects of ``tests/corpus/clients``, by file name, as its
    README lists them; ``client_corpus[name].fill(ours, start=…)`` gives the app's bytes."""
    files = catalogue()
    on_disk = {p.name for p in CLIENTS.glob("*.ics")}
    assert set(files) == on_disk, f"README and folder disagree: {set(files) ^ on_disk}"
    return files


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[object]:
    started: list[Running] = []

    def start(
        config: Path,
        port: int,
        max_fds: int | None = None,
        log: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Running:
        sock_path = tmp_path / f"notify-{len(started)}.sock"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(sock_path))
        environ = {
            **os.environ,
            **(env or {}),
            "NOTIFY_SOCKET": str(sock_path),
            "WATCHDOG_USEC": "2000000",
        }
        limit = (max_fds, max_fds) if max_fds else None
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "-c", str(config)],
            env=environ,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit))
            if limit
            else None,
            stdout=subprocess.PIPE,
            stderr=log.open("w") if log else subprocess.PIPE,
            text=True,
        )
        running = Running(proc, notify, f"http://127.0.0.1:{port}", config, [])
        started.append(running)
        running.wait_for("READY=1")
        return running

    yield start
    for running in started:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()
        running.notify.close()
