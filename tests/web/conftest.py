"""The feed listener and the admin listener over real sockets, one published feed; and a
headless Chromium for the tests that go through pages as a person does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.simulator.server import serve_in_thread
from bridge.web.admin import create_admin_app
from bridge.web.app import create_app
from bridge.web.health import StaticHealth
from bridge.web.links import new_feed_secret
from bridge.web.served import ServedFeeds
from tests.helpers.browser import Browser, chromium
from tests.helpers.web import Served, publish


@pytest.fixture
def served() -> Iterator[Served]:
    store, health, secret = ServedFeeds(), StaticHealth(), new_feed_secret()
    publish(store, secret)
    with (
        serve_in_thread(create_app(store, public_url="https://cal.example.edu")) as server,
        serve_in_thread(create_admin_app(health)) as admin,
    ):
        yield Served(server, admin, store, health, secret)


@pytest.fixture
def browser(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """Chromium at desktop size; its screenshots are named after the test module."""
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with chromium(tmp_path / "browser", prefix) as running:
        yield running
