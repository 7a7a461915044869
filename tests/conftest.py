"""Fixtures shared by the whole suite: the Canvas simulator served over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from bridge.simulator.app import create_app
from bridge.simulator.sample import SAMPLE_TOKENS, sample_world
from bridge.simulator.server import RunningServer, serve_in_thread
from bridge.simulator.world import World
from tests.helpers.clients import CLIENTS, ClientFile, catalogue

# A fixed "now" keeps sample data, and so every expectation built on it, deterministic.
SAMPLE_NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@dataclass
class Sim:
    """A simulator world and the server exposing it."""

    world: World
    server: RunningServer
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url


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
    README lists them; fill one in with :func:`tests.helpers.clients.client_edit`."""
    files = catalogue()
    on_disk = {p.name for p in CLIENTS.glob("*.ics")}
    assert set(files) == on_disk, f"README and folder disagree: {set(files) ^ on_disk}"
    return files
