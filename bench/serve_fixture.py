"""Helper for bench/serve.sh: render a 2,000-event feed with bridge.mapping, write its bytes
to a file (for nginx) and serve the same bytes with calbridge's feed app on a free port.
Prints "PORT SECRET ETAG" on one line, then serves until terminated."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.render import snapshot
from bridge.config import FeedConfig
from bridge.mapping import render_feed
from bridge.model.feed import PublishedFeed
from bridge.simulator.server import serve_in_thread
from bridge.web.app import create_app
from bridge.web.links import new_feed_secret
from bridge.web.served import ServedFeeds

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


def main(out: Path) -> None:
    import bench.render as render

    render.GROUPS = 400  # 400 groups × 5 bookings = 2,000 events
    feed = render_feed(
        snapshot(),
        replace(
            FeedConfig(id="bench", account="bench", include=["reservations"]).options({}),
            max_bytes=10**9,
        ),
        {},
        NOW,
    )
    out.write_bytes(feed.ics)
    store, secret = ServedFeeds(), new_feed_secret()
    published = PublishedFeed.build(
        "bench",
        "Bench",
        feed.ics,
        refreshed_at=NOW,
        last_modified=NOW - timedelta(hours=1),
        event_count=len(feed.events),
    )
    store.publish(published, secret)
    import logging

    logging.disable(logging.INFO)  # the access log would dominate the measurement
    with serve_in_thread(create_app(store, public_url="http://127.0.0.1")) as server:
        print(server.port, secret, published.etag, len(feed.events), flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
