"""What the daemon keeps per account between cycles, for 10,000 accounts in one process: no
render cache for a small feed, a small feed body held gzipped only, no poll-time histogram
per account, and the per-account series as plain values.

The real cycle (:class:`Syncer`) against the simulator over loopback HTTP, as in
``test_cycle_cost.py``.
"""

from __future__ import annotations

import gc
import gzip
import re
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from bridge import metrics
from bridge.daemon import cycle
from bridge.daemon.skip import Work
from bridge.model.feed import PLAIN_KEPT_FROM, PublishedFeed
from tests.conftest import Sim
from tests.daemon.test_cycle_cost import STUDENT_FEED, Bed, _bed


@pytest.fixture
def student(live_sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bed]:
    yield from _bed(live_sim, tmp_path, monkeypatch, {"alice": STUDENT_FEED})


def sequences(body: bytes) -> dict[str, int]:
    """Each event's SEQUENCE, by its SUMMARY."""
    text = body.decode().replace("\r\n ", "").replace("\r\n", "\n")
    found = {}
    for vevent in text.split("BEGIN:VEVENT")[1:]:
        summary = re.search(r"^SUMMARY:(.*)$", vevent, re.M)
        sequence = re.search(r"^SEQUENCE:(\d+)$", vevent, re.M)
        assert summary is not None
        found[summary.group(1).strip()] = int(sequence.group(1)) if sequence else 0
    return found


async def test_a_small_feed_keeps_no_render_cache_and_still_versions_its_events(
    student: Bed,
) -> None:
    await student.cycle()
    # 25 events or so: rendered from scratch, its versions read from the store
    assert student.syncer.cached_feeds() == set()
    before = student.syncer.feeds.get("alice")
    assert before is not None
    world = student.sim.world
    user = world.user_by_token(student.sim.tokens["alice"])
    assert user is not None
    conference = next(c for c in world.conferences.values() if user.id in c.participants)
    old_title = conference.title
    conference.title = "Renamed in Canvas"
    student.clock.now += timedelta(minutes=5)
    alice = student.syncer.settings.accounts[0]
    changed = await student.syncer.sync_account(alice)
    assert changed.work is Work.CANVAS and changed.feeds[0].changed
    after = student.syncer.feeds.get("alice")
    assert after is not None
    old, new = sequences(before.body), sequences(after.body)
    # the renamed event's version moved on; every other event kept its own
    assert new.pop("Renamed in Canvas") == old.pop(old_title) + 1
    assert new == old and new
    assert student.syncer.cached_feeds() == set()
    await student.syncer.aclose()


async def test_a_large_feed_keeps_its_render_cache(
    student: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cycle, "CACHED_FROM_EVENTS", 1)  # alice's feed counts as large
    await student.cycle()
    assert student.syncer.cached_feeds() == {"alice"}
    await student.syncer.aclose()


async def test_poll_times_go_to_one_histogram_and_few_series_name_an_account(
    student: Bed,
) -> None:
    def polls() -> float:
        return metrics.REGISTRY.get_sample_value("calbridge_poll_seconds_count") or 0.0

    before = polls()
    await student.cycle()
    student.clock.now += timedelta(minutes=5)
    await student.cycle()
    assert polls() == before + 2
    named = {
        sample.name
        for family in metrics.REGISTRY.collect()
        for sample in family.samples
        if sample.labels.get("account") == "alice" or sample.labels.get("feed") == "alice"
    }
    assert named == {
        "calbridge_polls_total",
        "calbridge_last_poll_success_timestamp_seconds",
        "calbridge_renders_total",
        "calbridge_last_render_success_timestamp_seconds",
        "calbridge_feed_events",
        "calbridge_feed_bytes",
    }
    await student.syncer.aclose()


def test_per_account_series_cost_a_dict_entry_each() -> None:
    """The six per-account and per-feed families of 300 accounts: prometheus_client's own
    children cost ~3.7 KiB per account (a child object, a value object and a lock per series)."""
    ids = [f"memory-test-{n}" for n in range(300)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for account in ids:
            metrics.POLLS.labels(account, "ok").inc()
            metrics.LAST_POLL_SUCCESS.labels(account).set(1.0)
            metrics.RENDERS.labels(account, "false").inc()
            metrics.LAST_RENDER_SUCCESS.labels(account).set(1.0)
            metrics.FEED_EVENTS.labels(account).set(25)
            metrics.FEED_BYTES.labels(account).set(3700)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used / len(ids) < 1200, f"{used / len(ids):.0f} bytes per account"
    text = generate_latest(metrics.REGISTRY).decode()
    assert "# TYPE calbridge_polls_total counter" in text
    assert 'calbridge_polls_total{account="memory-test-7",outcome="ok"} 1.0' in text
    assert 'calbridge_feed_bytes{feed="memory-test-7"} 3700.0' in text
    with pytest.raises(ValueError):
        metrics.POLLS.labels("memory-test-7", "ok").set(5)  # a counter only goes up


def test_a_small_feed_is_held_gzipped_only_and_a_large_one_plain_too() -> None:
    """A 4 KiB feed keeps one copy, gzipped (the plain bytes come back for the client that
    does not take gzip); a feed past PLAIN_KEPT_FROM keeps its plain bytes too, as
    decompressing it per request would cost more than its memory."""
    at = datetime(2026, 3, 2, tzinfo=UTC)
    event = b"BEGIN:VEVENT\r\nSUMMARY:Office hours\r\nEND:VEVENT\r\n"
    small_body = b"BEGIN:VCALENDAR\r\n" + event * 80 + b"END:VCALENDAR\r\n"
    large_body = b"BEGIN:VCALENDAR\r\n" + event * 2000 + b"END:VCALENDAR\r\n"
    assert len(small_body) < PLAIN_KEPT_FROM <= len(large_body)
    small, large = (
        PublishedFeed.build("f", "F", b, refreshed_at=at, last_modified=at, event_count=1)
        for b in (small_body, large_body)
    )
    assert small.plain == b"" and small.body == small_body
    assert gzip.decompress(small.gzip_body) == small_body
    assert large.plain is large_body and large.body is large_body
    assert (
        small.etag
        == PublishedFeed.build(
            "f", "F", small_body, refreshed_at=at, last_modified=at, event_count=1
        ).etag
    )


def test_the_daemon_imports_the_caldav_library_only_to_discover_a_calendar() -> None:
    """The caldav library brings niquests, urllib3, trio, rich and yaml: ~16 MB of RSS that a
    daemon serving feeds alone never uses."""
    code = (
        "import sys, bridge.cli, bridge.daemon.service, bridge.web.app, bridge.dav.remote\n"
        "print(sorted(m for m in ('caldav', 'niquests') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
