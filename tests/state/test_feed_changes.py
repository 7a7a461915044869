"""The announcements replicas listen to (PostgreSQL LISTEN/NOTIFY): a saved feed and a rotated
secret are announced at commit, a rolled-back change is not, and a listener that lost its
connection says "anything may have changed" once it is back."""

from __future__ import annotations

import queue
import time
from datetime import UTC, datetime

import psycopg
import pytest

from bridge.model.feed import PublishedFeed
from bridge.model.tokens import TokenSet
from bridge.state import open_state
from bridge.state.listen import FeedChanges, notify_feed
from bridge.state.vault import Vault, generate_key

T = datetime(2026, 3, 2, 12, tzinfo=UTC)
TOKENS = TokenSet(
    access_token="1~access-Zq8xYtW4pLmN3vB6",
    refresh_token=None,
    expires_at=None,
    user_id=7,
    user_name="Alice Liddell",
)


def feed(body: bytes) -> PublishedFeed:
    return PublishedFeed.build(
        "alice", "Alice", body, refreshed_at=T, last_modified=T, event_count=1
    )


def test_saved_feeds_and_rotated_secrets_are_announced(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    heard: queue.Queue[set[str] | None] = queue.Queue()
    state = open_state(pg_url)
    changes = FeedChanges(pg_url, heard.put)
    changes.start()
    try:
        assert heard.get(timeout=10) is None  # connected: check everything once
        state.save_feed(feed(b"BEGIN:VCALENDAR one"), {})
        assert heard.get(timeout=5) == {"alice"}
        state.rotate_feed_secret("alice")
        assert heard.get(timeout=5) == {"alice"}
        with state.session() as s:  # a change rolled back is never announced
            notify_feed(s, "bob")
            s.rollback()
        state.save_feed(feed(b"BEGIN:VCALENDAR two"), {})
        assert heard.get(timeout=5) == {"alice"}
        # the listening connection is cut (a database restart, a failover): back within
        # seconds, and "anything may have changed", since announcements meanwhile are lost
        dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'calbridge-feed-changes'"
            )
        assert heard.get(timeout=15) is None
        assert "feed changes: lost the state database" in caplog.text
        state.save_feed(feed(b"BEGIN:VCALENDAR three"), {})
        assert heard.get(timeout=5) == {"alice"}
        # a connected person's feed: its secret rotated on their page or by the CLI
        people = open_state(pg_url, Vault([generate_key()], source="test")).people
        person, _ = people.connect("canvas.example.edu", TOKENS, default_include=["conferences"])
        rotated = people.rotate_feed_secret(person.id, person.feeds[0].id)
        assert heard.get(timeout=5) == {rotated.feed_id}
        assert heard.empty()
    finally:
        started = time.monotonic()
        changes.stop()
        assert time.monotonic() - started < 3
        state.close()
