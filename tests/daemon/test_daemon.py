"""`calbridge run` as systemd runs it: READY/WATCHDOG/STOPPING, feeds over HTTP, outages that
keep the last good feed, kill -9 and restart."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.helpers.daemon import Running, cli, feed_urls, wait_feed, write_config
from tests.helpers.servers import free_port
from tests.helpers.sim import Sim
from tests.helpers.validators import assert_valid


def test_run_ready_feeds_health_metrics_stop(
    live_sim: Sim, tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    sim = live_sim
    port = free_port()
    daemon = start_daemon(write_config(tmp_path, sim, port), port)
    urls = feed_urls(daemon.config)
    alice = wait_feed(urls["alice"])
    assert alice.headers["content-type"] == "text/calendar; charset=utf-8"
    text = alice.text.replace("\r\n ", "")
    assert (
        assert_valid(alice.text) > 5
        and "SUMMARY:Office hours" in text
        and "Question about recursion depth" in text
    )
    teacher = wait_feed(urls["teacher"]).text
    assert "Alice Liddell: Question about recursion depth" in teacher.replace("\r\n ", "")
    daemon.wait_for("WATCHDOG=1")
    health = httpx.get(f"{daemon.admin_url}/healthz").json()
    assert health["status"] == "ok" and health["components"]["account:alice"]["status"] == "ok"
    metrics = httpx.get(f"{daemon.admin_url}/metrics").text
    assert 'calbridge_polls_total{account="alice",outcome="ok"} 1.0' in metrics
    assert daemon.stop() == 0
    daemon.wait_for("STOPPING=1")
    _, stderr = daemon.proc.communicate()
    for secret in (
        sim.tokens["alice"],
        sim.tokens["teacher"],
        urls["alice"].rsplit("/", 1)[-1].removesuffix(".ics"),
    ):
        assert secret not in stderr


def test_canvas_outage_keeps_the_last_good_feed(
    live_sim: Sim, tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    sim = live_sim
    port = free_port()
    daemon = start_daemon(write_config(tmp_path, sim, port), port)
    url = feed_urls(daemon.config)["alice"]
    before = wait_feed(url).content
    sim.world.faults.add("status", count=None, status=503)
    out = cli("sync", "-c", str(daemon.config), "--account", "alice", "--json")
    assert out.returncode == 10, out.stderr
    assert json.loads(out.stdout)["accounts"][0]["error"].endswith("Canvas answered 503 (HTTP 503)")
    assert httpx.get(url).content == before
    health = httpx.get(f"{daemon.admin_url}/healthz")
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    assert "503" in health.json()["components"]["account:alice"]["last_error"]
    sim.world.faults.clear()
    assert cli("sync", "-c", str(daemon.config), "--account", "alice").returncode == 0
    assert httpx.get(f"{daemon.admin_url}/healthz").json()["status"] == "ok"


def test_kill_9_during_sync_then_restart(
    live_sim: Sim, tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    sim = live_sim
    port = free_port()
    config = write_config(tmp_path, sim, port)
    first = start_daemon(config, port)
    urls = feed_urls(config)
    before = {k: wait_feed(u).content for k, u in urls.items()}
    first.stop()
    sim.world.faults.add("delay", path="/api/v1/appointment_groups", count=None, delay=3.0)
    syncing = subprocess.Popen(
        [sys.executable, "-m", "bridge", "sync", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(2.0)
    syncing.send_signal(signal.SIGKILL)
    syncing.wait()
    sim.world.faults.clear()
    with sqlite3.connect(tmp_path / "state.sqlite3") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    second = start_daemon(config, port)
    for key, url in urls.items():
        assert (
            httpx.get(url).content == before[key]
        )  # served from state at once, then re-rendered identically
    time.sleep(1.0)
    for key, url in urls.items():
        assert httpx.get(url).content == before[key]
    assert second.stop() == 0


def test_sync_dry_run_render_and_check(live_sim: Sim, tmp_path: Path) -> None:
    sim = live_sim
    config = write_config(tmp_path, sim, free_port())
    dry = cli("sync", "-c", str(config), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["dry_run"] is True and report["accounts"][0]["feeds"][0]["events"] > 5
    rendered = subprocess.run(
        [sys.executable, "-m", "bridge", "render", "alice", "-c", str(config)],
        capture_output=True,
        timeout=120,
    )
    assert (
        rendered.returncode == 0 and assert_valid(rendered.stdout.decode()) > 5
    )  # bytes: CRLF kept
    ok = cli("check", "-c", str(config))
    assert ok.returncode == 0 and "account alice: ok: token of Alice Liddell" in ok.stdout
    (tmp_path / "alice.token").write_text("revoked-or-wrong-token-999")
    bad = cli("check", "-c", str(config))
    assert (
        bad.returncode == 1
        and "account alice: FAILED" in bad.stdout
        and "invalid access token" in bad.stdout
    )
    assert "revoked-or-wrong-token-999" not in bad.stdout + bad.stderr
    unreachable = write_config(
        tmp_path,
        sim,
        free_port(),
        f"""
[[caldav]]
id = "phone"
account = "alice"
url = "http://127.0.0.1:{free_port()}/"
username = "alice"
password_env = "DAV_PW"
""",
    )
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "-c", str(unreachable)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "DAV_PW": "dav-password-777"},
    )
    assert out.returncode == 1 and "caldav phone: FAILED: caldav phone: cannot reach" in out.stdout
    assert "dav-password-777" not in out.stdout + out.stderr


def test_systemd_unit_is_hardened() -> None:
    unit = Path(__file__).resolve().parents[2] / "systemd" / "calbridge.service"
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=15", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout[-2000:]
    score = float(
        out.stdout.rsplit("Overall exposure level for calbridge.service:", 1)[1].split()[0]
    )
    assert score <= 1.5
    text = unit.read_text()
    for needed in (
        "Type=notify",
        "DynamicUser=yes",
        "StateDirectory=calbridge",
        "LoadCredential=",
        "WatchdogSec=",
    ):
        assert needed in text


def test_demo_serves_feeds_and_stops_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        feed = page = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (feed and page):
            line = proc.stdout.readline()
            if "subscribe page:" in line and page is None:
                page = line.split("subscribe page:")[1].strip()
            if "feed:" in line and feed is None:
                feed = line.split("feed:")[1].strip()
        assert feed and page
        ics = wait_feed(feed)
        assert assert_valid(ics.text) > 5
        assert "Add to Google Calendar" in httpx.get(page).text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sighup_reloads_config_and_keeps_old_on_error(
    live_sim: Sim, tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    port = free_port()
    config = write_config(tmp_path, live_sim, port)
    daemon = start_daemon(config, port)
    good = config.read_text()
    config.write_text(
        good + '\n[[feeds]]\nid = "alice-slots"\naccount = "alice"\ninclude = ["open_slots"]\n'
    )
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for("RELOADING=1")
    new_feed = wait_feed(feed_urls(config)["alice-slots"])
    assert "Open slot: Office hours" in new_feed.text
    config.write_text(good.replace('poll_interval = "1h"', 'poll_interval = "soon"', 1))
    daemon.messages.clear()
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for("READY=1")
    assert (
        httpx.get(f"{daemon.admin_url}/healthz").status_code == 200
    )  # still running on the old config
    assert daemon.stop() == 0
    _, stderr = daemon.proc.communicate()
    assert "reload: keeping the old configuration: config: accounts[0].poll_interval" in stderr


def test_sighup_stops_serving_a_feed_removed_from_the_config(
    live_sim: Sim, tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    port = free_port()
    config = write_config(tmp_path, live_sim, port)
    good = config.read_text()
    config.write_text(
        good + '\n[[feeds]]\nid = "alice-slots"\naccount = "alice"\ninclude = ["open_slots"]\n'
    )
    daemon = start_daemon(config, port)
    urls = feed_urls(config)
    wait_feed(urls["alice-slots"])
    config.write_text(good)
    daemon.messages.clear()
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for("READY=1")
    gone = httpx.get(urls["alice-slots"])
    assert gone.status_code == 404, "a feed dropped from the config is still served"
    assert httpx.get(urls["alice-slots"].removesuffix(".ics")).status_code == 404
    assert wait_feed(urls["alice"]).status_code == 200  # the feeds still configured stay
    assert daemon.stop() == 0
