"""Changes other processes made to the served feeds, as they happen (PostgreSQL only).

With several replicas on one PostgreSQL, a feed is rendered by whichever replica ran its
account (or by a one-off ``calbridge sync``), and every replica must serve it. The store
announces each saved feed and each rotated secret with ``NOTIFY calbridge_feeds, '<feed id>'``
in the transaction that made the change (delivered at commit, never for a rollback);
:class:`FeedChanges` listens on its own connection, in a thread, and hands the feed ids to the
daemon, which loads those feeds from the store. Each time it (re)connects it reports ``None``:
"anything may have changed" (notifications sent while it was not listening are lost), and the
daemon reloads every feed. SQLite has no listeners: one process serves, as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bridge.state.db import is_postgresql

log = logging.getLogger("bridge.state")

CHANNEL = "calbridge_feeds"
RECONNECT = 2.0  # seconds between attempts after the listening connection was lost


def notify_feed(bind: Session | Connection, feed_id: str) -> None:
    """Announce at commit that ``feed_id`` (its body or its secret) changed; no-op on SQLite."""
    if is_postgresql(bind):
        bind.execute(
            text("SELECT pg_notify(:channel, :feed)"), {"channel": CHANNEL, "feed": feed_id}
        )


def libpq_dsn(url: str) -> str:
    """The libpq connection string of a ``postgresql+psycopg://`` SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class FeedChanges:
    """Calls ``on_change(feed_ids)`` from a thread for every batch of announced feeds, and
    ``on_change(None)`` after each (re)connection. :meth:`stop` ends it within a second."""

    def __init__(self, url: str, on_change: Callable[[set[str] | None], None]) -> None:
        self._dsn = libpq_dsn(url)
        self._on_change = on_change
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed-changes", daemon=True)
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        failing = False
        while not self._stopped.is_set():
            try:
                self._listen()
                failing = False
            except psycopg.Error as exc:
                self.connected.clear()
                if not failing:  # once per outage
                    log.warning(
                        "feed changes: lost the state database (%s); retrying",
                        exc.sqlstate or type(exc).__name__,
                    )
                failing = True
                self._stopped.wait(RECONNECT)

    def _listen(self) -> None:
        with psycopg.connect(
            self._dsn, autocommit=True, application_name="calbridge-feed-changes"
        ) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self.connected.set()
            self._on_change(None)
            while not self._stopped.is_set():
                # wait up to a second for the first, then take whatever else arrived with it
                batch = {n.payload for n in conn.notifies(timeout=1.0, stop_after=1)}
                if batch:
                    batch |= {n.payload for n in conn.notifies(timeout=0.05)}
                    self._on_change(batch)
