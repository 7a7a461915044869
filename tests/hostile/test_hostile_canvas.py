"""A hostile Canvas on loopback against the real client, poller, renderer and ``calbridge sync``.

Each test reproduces one hole from issue 10: a ``Link`` to a foreign origin, a huge body, a
server that trickles, lone surrogates, CRLF in URLs, and Retry-After given as an HTTP date.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import icalendar
import pytest
from ical.calendar_stream import IcsCalendarStream

from bridge import errors
from bridge.calendar.feed import FeedOptions, render_feed
from bridge.canvas.client import CanvasClient
from bridge.canvas.poller import poll_account
from bridge.canvas.transport import CanvasLimits
from bridge.simulator.sample import SAMPLE_TOKENS, sample_world
from bridge.simulator.server import RunningServer, serve_in_thread
from tests.conftest import SAMPLE_NOW
from tests.hostile.canvas_server import SURROGATE, Collector, HostileCanvas

TOKEN = SAMPLE_TOKENS["alice"]


@pytest.fixture
def hostile() -> Iterator[tuple[HostileCanvas, RunningServer]]:
    canvas = HostileCanvas(sample_world(SAMPLE_NOW))
    with serve_in_thread(canvas.app()) as server:
        yield canvas, server


@pytest.fixture
def collector() -> Iterator[tuple[Collector, RunningServer]]:
    found = Collector()
    with serve_in_thread(found.app()) as server:
        yield found, server


def client(url: str, token: str = TOKEN, **kw: object) -> CanvasClient:
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("backoff_cap", 0.05)
    return CanvasClient(url, token, **kw)  # type: ignore[arg-type]


# --- Link headers ---------------------------------------------------------------------------


async def test_a_foreign_next_link_fails_the_poll_and_never_gets_the_token(
    hostile: tuple[HostileCanvas, RunningServer], collector: tuple[Collector, RunningServer]
) -> None:
    canvas, server = hostile
    found, elsewhere = collector
    canvas.mode, canvas.foreign = "foreign_link", elsewhere.url
    async with client(server.url) as c:
        with pytest.raises(errors.CanvasForeignLink) as caught:
            await poll_account(c, "canvas.sim")
    assert found.seen == []  # nothing, let alone the token, reached the other origin
    assert caught.value.refused == f"http://127.0.0.1:{elsewhere.port}"
    assert f"127.0.0.1:{elsewhere.port}" in str(caught.value)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    "foreign",
    [
        "https://127.0.0.1:{port}",  # same host and port, other scheme
        "http://localhost:{port}",  # same server, other host name
        "http://127.0.0.1:{other}",  # same host, other port
        "http://169.254.169.254",  # an internal address
        "//evil.example",  # scheme-relative: another host
    ],
)
async def test_every_other_origin_is_refused(
    hostile: tuple[HostileCanvas, RunningServer], foreign: str
) -> None:
    canvas, server = hostile
    canvas.mode = "foreign_link"
    canvas.foreign = foreign.format(port=server.port, other=server.port + 1)
    async with client(server.url) as c:
        with pytest.raises(errors.CanvasForeignLink):
            await c.conferences()
    assert canvas.paths == ["/api/v1/conferences"]


async def test_same_origin_links_are_followed(
    hostile: tuple[HostileCanvas, RunningServer],
) -> None:
    """The simulator's own absolute links (and Canvas's default port spelled out) still work."""
    canvas, server = hostile
    async with client(server.url) as c:
        honest = await c.appointment_groups()
    canvas.mode, canvas.foreign = "foreign_link", server.url
    async with client(server.url + "/") as c:
        again = await c.appointment_groups()  # page 2 of the same origin: followed (empty)
    assert [x.id for x in again] == [x.id for x in honest] and honest
    assert canvas.paths.count("/api/v1/appointment_groups") == 3


# --- size and time ----------------------------------------------------------------------------


async def test_a_huge_body_is_cut_off_at_the_limit(
    hostile: tuple[HostileCanvas, RunningServer],
) -> None:
    canvas, server = hostile
    canvas.mode = "huge"
    started = time.monotonic()
    async with client(server.url, limits=CanvasLimits(max_response_bytes=2_000_000)) as c:
        with pytest.raises(errors.CanvasResponseTooLarge) as caught:
            await c.conferences()
    assert time.monotonic() - started < 10
    assert "2000000 bytes" in str(caught.value) and "max_response_bytes" in str(caught.value)
    # the server could hand over at most the limit plus what sat in socket buffers
    assert canvas.sent_bytes < 40 * 1024 * 1024, canvas.sent_bytes


async def test_a_trickling_server_is_cut_off_by_the_request_deadline(
    hostile: tuple[HostileCanvas, RunningServer],
) -> None:
    canvas, server = hostile
    canvas.mode, canvas.trickle_every = "trickle", 0.5
    started = time.monotonic()
    limits = CanvasLimits(request_deadline=2.0)
    async with client(server.url, limits=limits, max_retries=0, timeout=30.0) as c:
        with pytest.raises(errors.CanvasTimeout) as caught:
            await c.conferences()
    elapsed = time.monotonic() - started
    assert 1.9 <= elapsed < 5, elapsed
    assert "request_deadline" in str(caught.value) and TOKEN not in str(caught.value)


async def test_the_poll_deadline_bounds_a_whole_poll(
    hostile: tuple[HostileCanvas, RunningServer],
) -> None:
    canvas, server = hostile
    canvas.mode, canvas.trickle_every = "trickle", 0.5
    started = time.monotonic()
    limits = CanvasLimits(request_deadline=60.0, poll_deadline=2.0)
    async with client(server.url, limits=limits) as c:
        with pytest.raises(errors.CanvasTimeout) as caught:
            await poll_account(c, "canvas.sim")
    assert 1.9 <= time.monotonic() - started < 5
    assert "poll_deadline" in str(caught.value)


async def test_retry_after_as_an_http_date_is_honoured(
    hostile: tuple[HostileCanvas, RunningServer],
) -> None:
    canvas, server = hostile
    canvas.mode, canvas.retry_after_seconds = "retry_date", 2.0
    started = time.monotonic()
    async with client(server.url, backoff_cap=10.0) as c:
        me = await c.me()
    assert me.name == "Alice Liddell"
    assert time.monotonic() - started >= 1.5  # the date lies 2-3 s ahead; jitter would be ~0


# --- hostile data -----------------------------------------------------------------------------


async def test_lone_surrogates_are_replaced_and_the_cycle_survives(
    hostile: tuple[HostileCanvas, RunningServer],
) -> None:
    canvas, server = hostile
    canvas.mode = "surrogates"
    async with client(server.url, SAMPLE_TOKENS["teacher"]) as c:
        snap = await poll_account(c, "canvas.sim")
    dumped = snap.model_dump_json()  # raised UnicodeEncodeError before the fix
    assert SURROGATE not in dumped and "\ufffd" in snap.manageable[0].title
    comments = [
        e.comments
        for g in snap.manageable
        for s in g.appointments
        for e in s.child_events or []
        if e.comments
    ]
    assert comments and all("\ufffd" in x and SURROGATE not in x for x in comments)
    options = FeedOptions(include=frozenset({"conferences", "managed_slots"}))
    feed = render_feed(snap, options, {}, SAMPLE_NOW)
    feed.ics.decode("utf-8")  # valid UTF-8 all through
    assert IcsCalendarStream.calendar_from_ics(feed.ics.decode()).events


async def test_crlf_in_urls_cannot_inject_events(
    hostile: tuple[HostileCanvas, RunningServer],
) -> None:
    canvas, server = hostile
    async with client(server.url) as c:
        honest = await poll_account(c, "canvas.sim")
    canvas.mode = "crlf"
    async with client(server.url) as c:
        snap = await poll_account(c, "canvas.sim")
    options = FeedOptions(
        include=frozenset({"conferences", "reservations", "open_slots"}),
        window_past=timedelta(days=3650),
    )
    expected = render_feed(honest, options, {}, SAMPLE_NOW).events
    feed = render_feed(snap, options, {}, SAMPLE_NOW)
    text = feed.ics.decode()
    assert len(feed.events) == len(expected) > 3
    strict = IcsCalendarStream.calendar_from_ics(text)
    assert len(strict.events) == len(expected)
    loose = icalendar.Calendar.from_ical(text)
    assert len(loose.walk("VEVENT")) == len(expected)
    assert "injected@evil" not in {str(e["UID"]) for e in loose.walk("VEVENT")}
    assert "\r\nURL:" not in text and "\r\nCONFERENCE" not in text
