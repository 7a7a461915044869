"""Two `calbridge run` replicas on one PostgreSQL, differing only in their listen address
(CALBRIDGE_HTTP__LISTEN): a feed rendered elsewhere (here by a one-off `calbridge sync`, as
by another replica's job) is served by both with the same body and ETag within seconds, and a
secret rotated by the CLI is honoured by both (the old URL 404)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.helpers.daemon import Running, cli, feed_urls, wait_feed, write_config
from tests.helpers.servers import free_port
from tests.helpers.sim import Sim

PASSWORD = "Zx9-replica-pw-4471"
PROPAGATION = 5.0  # seconds: LISTEN/NOTIFY delivers in well under one; slack for a busy machine


def on(replica: Running, url: str) -> str:
    """``url`` (a feed URL as `calbridge feeds` prints it) on ``replica``'s listener."""
    return replica.url + "/feeds/" + url.split("/feeds/", 1)[1]


def until(check: Callable[[], bool], timeout: float = PROPAGATION) -> float:
    """Seconds until ``check()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s")


def polled(replica: Running) -> bool:
    metrics = httpx.get(f"{replica.admin_url}/metrics").text
    return all(
        f'calbridge_polls_total{{account="{a}",outcome="ok"}} 1.0' in metrics
        for a in ("alice", "teacher")
    )


def test_replicas_serve_feeds_rendered_elsewhere_and_rotated_secrets(
    live_sim: Sim, tmp_path: Path, pg_url: str, start_daemon: Callable[..., Running]
) -> None:
    sim = live_sim
    port_a, port_b = free_port(), free_port()
    config = write_config(tmp_path, sim, port_a)
    text = config.read_text().replace(f'url = "sqlite:///{tmp_path / "state.sqlite3"}"', "")
    # a password in the URL (trust authentication ignores it) must never reach a log
    url = pg_url.replace("calbridge@", f"calbridge:{PASSWORD}@")
    config.write_text(text.replace("[state]", f'[state]\nurl = "{url}"', 1))
    a = start_daemon(config, port_a)
    b = start_daemon(
        config,
        port_b,
        env={
            "CALBRIDGE_HTTP__LISTEN": f"127.0.0.1:{port_b}",
            "CALBRIDGE_HTTP__ADMIN_LISTEN": f"127.0.0.1:{port_b + 1}",
        },
    )
    urls = feed_urls(config)
    for replica in (a, b):
        wait_feed(on(replica, urls["alice"]))
        until(lambda r=replica: polled(r), timeout=60)  # each ran its start-up cycles
    # Canvas changes; neither replica polls again for an hour: a one-off sync renders it
    with sim.world.lock:
        lecture = next(c for c in sim.world.conferences.values() if c.title.startswith("Lecture"))
        lecture.title = "Lecture 5: Recursion, moved to room 101"
    synced = cli("sync", "-c", str(config), "--account", "alice")
    assert synced.returncode == 0, synced.stderr
    served: dict[str, httpx.Response] = {}

    def renamed(replica: Running) -> bool:
        r = httpx.get(on(replica, urls["alice"]))
        served[replica.url] = r
        return r.status_code == 200 and "room 101" in r.text.replace("\r\n ", "")

    waited = [until(lambda r=replica: renamed(r)) for replica in (a, b)]
    first, second = served[a.url], served[b.url]
    assert first.content == second.content and first.headers["etag"] == second.headers["etag"]
    assert first.headers["last-modified"] == second.headers["last-modified"]
    # the replicas' metrics: neither polled again, both serve the new body
    assert polled(a) and polled(b)
    # a secret rotated by the CLI: both serve the new URL only
    rotated = cli("feeds", "rotate-secret", "alice", "-c", str(config))
    assert rotated.returncode == 0, rotated.stderr
    new = feed_urls(config)["alice"]
    assert new != urls["alice"]
    for replica in (a, b):
        waited.append(until(lambda r=replica: httpx.get(on(r, new)).status_code == 200))
        assert httpx.get(on(replica, urls["alice"])).status_code == 404
        assert httpx.get(on(replica, new)).headers["etag"] == first.headers["etag"]
    print(f"propagation (s): {', '.join(f'{w:.2f}' for w in waited)}")
    assert a.stop() == 0 and b.stop() == 0
    for replica in (a, b):
        _, stderr = replica.proc.communicate()
        assert "listening on" in stderr and PASSWORD not in stderr
