"""A published feed and the listeners serving it, for the web tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bridge.model.feed import PublishedFeed
from bridge.simulator.server import RunningServer
from bridge.web.health import StaticHealth
from bridge.web.served import ServedFeeds

CHANGED = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


ICS = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:a@x\r\n"
    b"DTSTAMP:20260301T083000Z\r\nDTSTART:20260302T100000Z\r\nSUMMARY:Office hours\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


@dataclass
class Served:
    server: RunningServer
    admin: RunningServer
    store: ServedFeeds
    health: StaticHealth
    secret: str

    @property
    def feed_url(self) -> str:
        return f"{self.server.url}/feeds/alice/{self.secret}.ics"


def publish(
    store: ServedFeeds, secret: str, body: bytes = ICS, changed: datetime = CHANGED
) -> PublishedFeed:
    feed = PublishedFeed.build(
        "alice",
        "Alice's Canvas",
        body,
        refreshed_at=changed + timedelta(minutes=5),
        last_modified=changed,
        event_count=1,
        includes=("conferences", "reservations"),
    )
    store.publish(feed, secret)
    return feed
