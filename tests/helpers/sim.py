"""The Canvas simulator as the tests run it: its world, its server and its tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.simulator.server import RunningServer
from bridge.simulator.world import World

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
