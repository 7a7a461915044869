"""The HTTP surface a hostile client sees: no health or metrics on the feed listener, no
slash redirects, escaped log paths, security headers, Accept-Encoding q-values, the admin
token, and /healthz that never stalls the feeds while the state database is locked."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge.config import settings_from
from bridge.daemon.health import DaemonHealth
from bridge.errors import StateUnavailable
from bridge.simulator.server import serve_in_thread
from bridge.state import open_state
from bridge.web.admin import create_admin_app
from bridge.web.app import accepts_gzip, create_app
from bridge.web.health import HealthReport, StaticHealth
from bridge.web.links import new_feed_secret
from bridge.web.served import ServedFeeds
from bridge.web.server import BoundedHttpTools, WebServer
from tests.helpers.web import ICS, Served, publish


def test_feed_listener_answers_404_for_health_and_metrics(served: Served) -> None:
    for path in ("/healthz", "/metrics", "/healthz/", "/metrics?x=1"):
        r = httpx.get(served.server.url + path)
        assert r.status_code == 404, path
    assert httpx.get(f"{served.admin.url}/healthz").status_code == 200


def test_trailing_slash_is_not_redirected(served: Served) -> None:
    for url in (served.feed_url + "/", served.feed_url.removesuffix(".ics") + "/"):
        r = httpx.get(url, headers={"Host": "evil.example"}, follow_redirects=False)
        assert r.status_code == 404 and "location" not in r.headers
        assert served.secret not in r.text


def test_log_lines_cannot_be_forged(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bridge.web")
    httpx.get(served.server.url + "/x%0A2026-01-01%2000:00:00%20INFO%20bridge.web:%20forged%0D")
    deadline = time.monotonic() + 5  # the server logs after it answered
    while True:
        lines = [r.getMessage() for r in caplog.records if r.name == "bridge.web"]
        forged = [line for line in lines if "forged" in line]
        if forged or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert forged and all("\n" not in line and "\r" not in line for line in forged)
    assert "/x%0A2026-01-01%2000:00:00%20INFO%20bridge.web:%20forged%0D 404" in forged[0]


def _script_and_style(page: str) -> tuple[str, str]:
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert script and style
    return script.group(1), style.group(1)


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def test_security_headers(served: Served) -> None:
    page = httpx.get(served.feed_url.removesuffix(".ics"))
    csp = page.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    script, style = _script_and_style(page.text)
    assert f"script-src {_hash(script)}" in csp and f"style-src {_hash(style)}" in csp
    responses = [
        page,
        httpx.get(served.feed_url),
        httpx.head(served.feed_url),
        httpx.get(served.feed_url, headers={"If-None-Match": "*"}),
        httpx.get(served.server.url + "/"),
        httpx.get(served.server.url + "/nothing"),
        httpx.post(served.feed_url),
        httpx.get(f"{served.admin.url}/healthz"),
        httpx.get(f"{served.admin.url}/metrics"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 304, 200, 404, 404, 200, 200]
    for r in responses:
        assert r.headers["x-content-type-options"] == "nosniff", r.url
        assert r.headers["x-frame-options"] == "DENY", r.url


@pytest.mark.parametrize(
    ("header", "gzip"),
    [
        ("gzip", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0, identity", False),
        ("GZIP;Q=0.5", True),
        ("*", True),
        ("*;q=0", False),
        ("gzip;q=0, *;q=1", False),
        ("br, deflate", False),
        ("identity", False),
        ("", False),
        ("gzip;q=abc", False),
    ],
)
def test_accept_encoding_q_values(header: str, gzip: bool) -> None:
    assert accepts_gzip(header) is gzip


def test_gzip_q_zero_gets_identity_over_http(served: Served) -> None:
    with (
        httpx.Client() as client,
        client.stream("GET", served.feed_url, headers={"Accept-Encoding": "gzip;q=0"}) as r,
    ):
        raw = b"".join(r.iter_raw())
    assert "content-encoding" not in r.headers and raw == ICS


def test_admin_token(tmp_path: Path) -> None:
    token = "an-admin-token-of-some-length"
    with serve_in_thread(create_admin_app(StaticHealth(), token=token)) as admin:
        for path in ("/healthz", "/metrics"):
            assert httpx.get(admin.url + path).status_code == 401
            wrong = {"Authorization": "Bearer not-the-token-at-all-no"}
            assert httpx.get(admin.url + path, headers=wrong).status_code == 401
            right = {"Authorization": f"Bearer {token}"}
            assert httpx.get(admin.url + path, headers=right).status_code == 200


@pytest.fixture
def locked_state(tmp_path: Path) -> Iterator[tuple[DaemonHealth, sqlite3.Connection]]:
    db = tmp_path / "state.sqlite3"
    state = open_state(f"sqlite:///{db}")
    settings = settings_from(
        {"accounts": [{"id": "alice", "canvas_url": "https://canvas.example", "token_env": "X"}]}
    )
    health = DaemonHealth(lambda: settings, state, lambda: True)
    health.health()  # the database answers while nobody holds it
    locker = sqlite3.connect(db, isolation_level=None)
    yield health, locker
    locker.close()
    state.close()


def test_healthz_with_the_database_locked_never_stalls_feeds(
    served: Served, locked_state: tuple[DaemonHealth, sqlite3.Connection]
) -> None:
    health, locker = locked_state
    with serve_in_thread(create_admin_app(health, deadline=1.0)) as admin:
        assert httpx.get(f"{admin.url}/healthz").json()["status"] == "starting"
        locker.execute("BEGIN IMMEDIATE")
        answers: dict[str, httpx.Response] = {}
        asking = threading.Thread(
            target=lambda: answers.setdefault("health", httpx.get(f"{admin.url}/healthz")),
        )
        started = time.monotonic()
        asking.start()
        time.sleep(0.2)
        feed_times = []
        for _ in range(5):
            t = time.monotonic()
            assert httpx.get(served.feed_url).status_code == 200
            feed_times.append(time.monotonic() - t)
        asking.join(timeout=15)
        waited = time.monotonic() - started
        second = httpx.get(f"{admin.url}/healthz", timeout=5)  # the same stuck check, no pile-up
        locker.execute("ROLLBACK")
    assert max(feed_times) < 0.5, feed_times
    report = answers["health"]
    assert waited < 3.0, waited
    # no cycle has run yet: still "starting" (503), now with the state store's reason
    assert (report.status_code, report.json()["status"]) == (503, "starting")
    assert "did not answer within 1s" in report.json()["components"]["state"]["error"]
    assert "did not answer" in second.json()["components"]["state"]["error"]


def test_healthz_is_degraded_when_the_state_store_fails(
    locked_state: tuple[DaemonHealth, sqlite3.Connection],
) -> None:
    health, _ = locked_state

    class Failing:
        def health(self) -> HealthReport:
            raise StateUnavailable("the disk holding the state database is full")

    with serve_in_thread(create_admin_app(Failing())) as admin:
        r = httpx.get(f"{admin.url}/healthz")
        assert r.json()["components"]["state"] == {
            "status": "degraded",
            "error": "the disk holding the state database is full",
        }
    health.state_error = "the disk holding the state database is full"  # a cycle hit it
    report = health.health()
    assert report.status == "degraded" and report.http_status == 200
    assert report.components["state"]["error"].endswith("is full")


def test_the_feed_listener_parses_http_with_httptools() -> None:
    """The cheaper route measured by bench/serve.py (a 304: ~85 µs of CPU instead of ~190 µs
    with h11), keeping the header deadline and the connection cap (tests/daemon/test_http_edges)."""
    server = WebServer(
        create_app(ServedFeeds(), public_url="http://x"),
        "127.0.0.1:0",
        max_connections=100,
        header_timeout=10,
        keepalive_timeout=5,
    )
    try:
        assert issubclass(server.protocol, BoundedHttpTools)
        assert server.protocol.max_connections == 100
    finally:
        server._sock.close()


def test_without_oauth_the_personal_pages_do_not_exist(served: Served) -> None:
    home = httpx.get(served.server.url + "/")
    assert home.status_code == 200 and "Connect with Canvas" not in home.text
    assert "set-cookie" not in home.headers
    for path in ("/connect", "/oauth/callback?code=x&state=y", "/me"):
        r = httpx.get(served.server.url + path, follow_redirects=False)
        assert r.status_code == 404, path
    for path in ("/me/disconnect", "/me/feeds/1", "/me/calendars", "/signout"):
        assert httpx.post(served.server.url + path, data={"csrf": "x"}).status_code == 404, path


async def test_a_kept_alive_feed_request_does_not_wait_for_a_delayed_ack() -> None:
    """uvicorn writes an answer's headers and its body separately: with Nagle's algorithm on,
    every request after a connection's first waited 40-44 ms for the client's delayed ACK."""
    store, secret = ServedFeeds(), new_feed_secret()
    publish(store, secret)
    server = WebServer(
        create_app(store, public_url="http://x"),
        "127.0.0.1:0",
        max_connections=100,
        header_timeout=10,
        keepalive_timeout=5,
    )
    await server.start()
    try:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        request = (
            f"GET /feeds/alice/{secret}.ics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n"
        ).encode()
        times = []
        for _ in range(6):
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            times.append(time.perf_counter() - start)
        writer.close()
    finally:
        await server.stop()
    assert min(times[1:]) < 0.02, times
