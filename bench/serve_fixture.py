"""Helper for bench/serve.py: render a 2,000-event feed with bridge.mapping, write its bytes
to a file (for nginx) and serve the same bytes the way the daemon does (its feed app on its
:class:`~bridge.web.server.WebServer`, in the daemon's event loop) on a free loopback port.
Prints "PORT SECRET ETAG EVENTS" on one line, then serves until terminated.

``--access-log`` keeps the daemon's default: its logging set up as `calbridge run` does (text,
level info: one redacted line per request), stderr going to a file. Without it the level is
warning, like nginx's ``access_log off`` beside it."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from secrets import token_urlsafe

from bench.render import snapshot
from bridge.config import FeedConfig
from bridge.config.schema import HttpConfig
from bridge.daemon.logs import register_secret, setup_logging
from bridge.mapping import render_feed
from bridge.model.feed import PublishedFeed
from bridge.web.app import create_app
from bridge.web.links import new_feed_secret
from bridge.web.served import ServedFeeds
from bridge.web.server import WebServer, connection_cap

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


async def serve(out: Path, parser: str) -> None:
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
    await asyncio.to_thread(out.write_bytes, feed.ics)
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
    http = HttpConfig()  # the daemon's defaults, as service.py passes them
    server = WebServer(
        create_app(store, public_url="http://127.0.0.1"),
        "127.0.0.1:0",
        max_connections=connection_cap(http.max_connections, share=0.9),
        header_timeout=http.header_timeout.total_seconds(),
        keepalive_timeout=http.keepalive_timeout.total_seconds(),
        parser=parser,
    )
    await server.start()
    print(server.port, secret, published.etag, len(feed.events), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--access-log", type=Path)
    parser.add_argument(
        "--secrets", type=int, default=0, help="secrets registered for redaction, as a daemon"
    )
    parser.add_argument("--parser", choices=["httptools", "h11"], default="httptools")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    if args.access_log:
        sys.stderr = args.access_log.open("w")
    setup_logging("info" if args.access_log else "warning", "text")
    for _ in range(args.secrets):  # a daemon for 10,000 people: a token and a feed secret each
        register_secret(token_urlsafe(32))
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(serve(args.out, args.parser))
    else:
        asyncio.run(serve(args.out, args.parser))


if __name__ == "__main__":
    main()
