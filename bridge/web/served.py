"""The feeds being served, held in memory with their secrets: requests never render.

The daemon publishes a feed after each successful render; a failed poll publishes nothing, so
the last good feed keeps being served. The gzip variant is compressed once at publish time.
"""

from __future__ import annotations

import hmac
import threading

from bridge.model.feed import PublishedFeed


class ServedFeeds:
    """Feeds by id, each with its secret. Safe to use from the daemon and the server at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._feeds: dict[str, PublishedFeed] = {}
        self._secrets: dict[str, str] = {}

    def publish(self, feed: PublishedFeed, secret: str) -> None:
        with self._lock:
            self._feeds[feed.feed_id] = feed
            self._secrets[feed.feed_id] = secret

    def set_secret(self, feed_id: str, secret: str) -> None:
        with self._lock:
            self._secrets[feed_id] = secret

    def secret_of(self, feed_id: str) -> str | None:
        with self._lock:
            return self._secrets.get(feed_id)

    def retain(self, feed_ids: set[str]) -> list[str]:
        """Stop serving every feed not in ``feed_ids`` (dropped from the config); their ids."""
        with self._lock:
            gone = sorted(set(self._feeds) - feed_ids)
            for feed_id in gone:
                del self._feeds[feed_id]
                self._secrets.pop(feed_id, None)
            return gone

    def get(self, feed_id: str) -> PublishedFeed | None:
        with self._lock:
            return self._feeds.get(feed_id)

    def lookup(self, feed_id: str, secret: str) -> PublishedFeed | None:
        """The feed if ``secret`` is right, compared in constant time; else None."""
        with self._lock:
            expected = self._secrets.get(feed_id)
            feed = self._feeds.get(feed_id)
        # Compare against a dummy when the id is unknown, so both paths do the same work.
        ok = hmac.compare_digest((expected or "\x00" * 32).encode(), secret.encode())
        return feed if ok and expected is not None else None
