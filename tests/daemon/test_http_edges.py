"""The daemon's HTTP edges under hostile clients: a flood of idle sockets with few file
descriptors, a client that trickles its headers, and a secret rotated while Canvas fails."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.helpers.daemon import Running, cli, feed_urls, wait_feed, write_config
from tests.helpers.servers import free_port
from tests.helpers.sim import Sim


def test_idle_socket_flood_with_few_descriptors(
    live_sim: Sim, tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    """The issue's reproduction: ulimit -n 256 and 300 idle sockets. Feeds and /healthz keep
    answering at once, and the log does not grow per refused connection."""
    port = free_port()
    log = tmp_path / "daemon.log"
    daemon = start_daemon(write_config(tmp_path, live_sim, port), port, max_fds=256, log=log)
    url = feed_urls(daemon.config)["alice"]
    wait_feed(url)
    idle = []
    try:
        flood_started = time.monotonic()
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", port))
            idle.append(s)
        flood_seconds = time.monotonic() - flood_started
        time.sleep(1.0)  # let the server accept what it can
        size_before = log.stat().st_size
        slowest = 0.0
        for _ in range(10):
            started = time.monotonic()
            r = httpx.get(url, timeout=5)
            slowest = max(slowest, time.monotonic() - started)
            assert r.status_code == 200
        health = httpx.get(f"{daemon.admin_url}/healthz", timeout=5)
        assert health.status_code == 200
        time.sleep(2.0)
        grown = log.stat().st_size - size_before
    finally:
        for s in idle:
            s.close()
    print(f"300 idle sockets opened in {flood_seconds:.2f}s; slowest feed request {slowest:.3f}s")
    assert slowest < 1.0, slowest
    assert grown < 20_000, log.read_text()[-3000:]
    assert daemon.stop() == 0


def test_headers_must_arrive_within_the_header_timeout(
    live_sim: Sim, tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    port = free_port()
    config = write_config(tmp_path, live_sim, port, http='header_timeout = "2s"')
    daemon = start_daemon(config, port)
    silent = socket.create_connection(("127.0.0.1", port))
    trickle = socket.create_connection(("127.0.0.1", port))
    trickle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    silent.settimeout(10)
    trickle.settimeout(0.5)
    closed_at = None
    while time.monotonic() - started < 8:
        try:
            trickle.sendall(b"X-A: b\r\n")
        except OSError:
            closed_at = time.monotonic() - started
            break
        try:
            if trickle.recv(1) == b"":
                closed_at = time.monotonic() - started
                break
        except TimeoutError:
            pass
    assert closed_at is not None and 1.5 < closed_at < 4.0, closed_at
    assert silent.recv(1) == b""  # closed, without a request ever sent
    assert time.monotonic() - started < 4.0
    silent.close()
    trickle.close()
    # a normal client on a kept-alive connection is served as before
    with httpx.Client() as client:
        assert client.get(f"{daemon.url}/").status_code == 200
        assert client.get(f"{daemon.url}/").status_code == 200
    assert daemon.stop() == 0


def test_rotated_secret_takes_effect_within_seconds_while_canvas_fails(
    live_sim: Sim, tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    port = free_port()
    daemon = start_daemon(write_config(tmp_path, live_sim, port), port)
    old = feed_urls(daemon.config)["alice"]
    body = wait_feed(old).content
    live_sim.world.faults.add("status", count=None, status=503)  # no poll will succeed now
    out = cli("feeds", "rotate-secret", "alice", "-c", str(daemon.config))
    assert out.returncode == 0, out.stderr
    assert "within 2 seconds" in out.stdout and "calbridge feeds" in out.stdout
    rotated = time.monotonic()
    deadline = rotated + 10
    while httpx.get(old).status_code != 404:
        assert time.monotonic() < deadline, "the old URL still answers"
        time.sleep(0.05)
    switched = time.monotonic() - rotated
    new = feed_urls(daemon.config)["alice"]
    assert new != old
    r = httpx.get(new)
    assert r.status_code == 200 and r.content == body
    print(f"old URL 404 {switched:.2f}s after rotate-secret returned")
    assert switched < 3.0, switched  # the daemon checks every 2 s
    assert daemon.stop() == 0
