"""The subscribe page in headless Chromium: the DOM after scripts ran has the right links, and
a screenshot is kept in test-artifacts/ for a person to look at."""

from __future__ import annotations

import html
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.simulator.server import RunningServer, serve_in_thread
from bridge.web.app import create_app
from bridge.web.links import feed_urls, new_feed_secret
from bridge.web.served import ServedFeeds
from tests.helpers.web import publish

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                f"--user-data-dir={profile}",
                "--window-size=1000,1100",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=True,
        )


@pytest.fixture
def page() -> Iterator[tuple[RunningServer, str]]:
    store, secret = ServedFeeds(), new_feed_secret()
    publish(store, secret)
    with serve_in_thread(create_app(store, public_url="https://cal.example.edu")) as server:
        yield server, secret


def test_subscribe_page_in_chromium(page: tuple[RunningServer, str]) -> None:
    server, secret = page
    url = f"{server.url}/feeds/alice/{secret}"
    run = chromium("--dump-dom", "--enable-logging=stderr", "--v=0", url)
    dom = run.stdout
    assert "Content Security Policy" not in run.stderr, run.stderr[-2000:]  # script and style ran
    urls = feed_urls("https://cal.example.edu", "alice", secret, "Alice's Canvas")
    assert f'href="{html.escape(urls.google)}"' in dom
    assert f'href="{html.escape(urls.outlook_live)}"' in dom
    assert f'href="{html.escape(urls.webcal)}"' in dom
    assert f'value="{urls.https}"' in dom
    assert "Google Calendar fetches a feed only every few hours" in dom and "web conferences" in dom
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "subscribe-page.png"
    shot.unlink(missing_ok=True)
    chromium(f"--screenshot={shot}", url)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
