"""A hostile Canvas on loopback against the real client, poller, renderer and ``calbridge sync``.

Each test reproduces one hole from issue 10: a ``Link`` to a foreign origin, a huge body, a
server that trickles, lone surrogates, CRLF in URLs, and Retry-After given as an HTTP date.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import pytest
from ical.calendar_stream import IcsCalendarStream

from bridge import errors
from bridge.canvas.client import CanvasClient
from bridge.canvas.poller import poll_account
from bridge.mapping.feed import render_feed
from bridge.simulator.sample import SAMPLE_TOKENS, sample_world
from bridge.simulator.server import RunningServer, serve_in_thread
from tests.helpers.hostile_canvas import SURROGATE, Collector, HostileCanvas
from tests.helpers.options import canvas_client, canvas_limits, feed_options, poll_options
from tests.helpers.sim import SAMPLE_NOW

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
    return canvas_client(url, token, **kw)  # type: ignore[arg-type]


# --- Link headers ---------------------------------------------------------------------------


async def test_a_foreign_next_link_fails_the_poll_and_never_gets_the_token(
    hostile: tuple[HostileCanvas, RunningServer], collector: tuple[Collector, RunningServer]
) -> None:
    canvas, server = hostile
    found, elsewhere = collector
    canvas.mode, canvas.foreign = "foreign_link", elsewhere.url
    async with client(server.url) as c:
        with pytest.raises(errors.CanvasForeignLink) as caught:
            await poll_account(c, "canvas.sim", poll_options())
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
    async with client(server.url, limits=canvas_limits(max_response_bytes=2_000_000)) as c:
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
    limits = canvas_limits(request_deadline=2.0)
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
    limits = canvas_limits(request_deadline=60.0, poll_deadline=2.0)
    async with client(server.url, limits=limits) as c:
        with pytest.raises(errors.CanvasTimeout) as caught:
            await poll_account(c, "canvas.sim", poll_options())
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
        snap = await poll_account(c, "canvas.sim", poll_options())
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
    options = feed_options(include={"conferences", "managed_slots"})
    feed = render_feed(snap, options, {}, SAMPLE_NOW)
    feed.ics.decode("utf-8")  # valid UTF-8 all through
    assert IcsCalendarStream.calendar_from_ics(feed.ics.decode()).events


async def test_crlf_in_urls_cannot_inject_events(
    hostile: tuple[HostileCanvas, RunningServer],
) -> None:
    canvas, server = hostile
    async with client(server.url) as c:
        honest = await poll_account(c, "canvas.sim", poll_options())
    canvas.mode = "crlf"
    async with client(server.url) as c:
        snap = await poll_account(c, "canvas.sim", poll_options())
    options = feed_options(
        include={"conferences", "reservations", "open_slots"},
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


# --- the real `calbridge sync` ----------------------------------------------------------------


@pytest.fixture
def live_hostile() -> Iterator[tuple[HostileCanvas, RunningServer]]:
    """Sample data around the real clock: `calbridge render` windows on the real now."""
    canvas = HostileCanvas(sample_world())
    with serve_in_thread(canvas.app()) as server:
        yield canvas, server


def write_config(tmp: Path, canvas_url: str, who: str = "alice", **account: str | int) -> Path:
    (tmp / "token").write_text(SAMPLE_TOKENS[who])
    extra = "".join(
        f"{k} = {v!r}\n" if isinstance(v, int) else f'{k} = "{v}"\n' for k, v in account.items()
    )
    config = tmp / "calbridge.toml"
    config.write_text(
        f'[state]\nurl = "sqlite:///{tmp / "state.sqlite3"}"\n'
        f'[[accounts]]\nid = "acct"\ncanvas_url = "{canvas_url}"\n'
        f'token_file = "{tmp / "token"}"\n{extra}'
        '[[feeds]]\nid = "feed"\naccount = "acct"\n'
        'include = ["conferences", "reservations", "open_slots", "managed_slots"]\n'
    )
    return config


def calbridge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("foreign_link", "refused to follow a pagination link to http://127.0.0.1:{port}"),
        ("huge", "more than 1000000 bytes (max_response_bytes)"),
        ("trickle", "(poll_deadline)"),
    ],
)
def test_sync_fails_the_poll_and_keeps_the_last_good_feed(
    tmp_path: Path,
    live_hostile: tuple[HostileCanvas, RunningServer],
    collector: tuple[Collector, RunningServer],
    mode: str,
    error: str,
) -> None:
    canvas, server = live_hostile
    found, elsewhere = collector
    config = write_config(
        tmp_path,
        server.url,
        max_response_bytes=1_000_000,
        request_deadline="2s",
        poll_deadline="3s",
    )
    good = calbridge("sync", "-c", str(config), "--json")
    assert good.returncode == 0, good.stdout + good.stderr
    before = calbridge("render", "-c", str(config), "feed").stdout
    assert before.count("BEGIN:VEVENT") >= 3

    canvas.mode, canvas.foreign = mode, elsewhere.url
    started = time.monotonic()
    bad = calbridge("sync", "-c", str(config), "--json")
    elapsed = time.monotonic() - started
    assert bad.returncode == 10, bad.stdout + bad.stderr  # the poll failed
    result = json.loads(bad.stdout)["accounts"][0]
    assert result["ok"] is False and error.format(port=elsewhere.port) in result["error"]
    assert SAMPLE_TOKENS["alice"] not in bad.stdout + bad.stderr
    assert found.seen == []
    assert elapsed < 20, elapsed  # a trickle or a huge body does not hold the command
    after = calbridge("render", "-c", str(config), "feed").stdout
    assert after == before  # the last good data, byte for byte


def test_sync_survives_surrogates_and_crlf(
    tmp_path: Path, live_hostile: tuple[HostileCanvas, RunningServer]
) -> None:
    """A teacher's cycle with half an emoji in a comment and CRLF in every URL: it saves the
    snapshot, and the feed has the same events as an honest one, no more."""
    canvas, server = live_hostile
    config = write_config(tmp_path, server.url, who="teacher")
    assert calbridge("sync", "-c", str(config)).returncode == 0
    honest = calbridge("render", "-c", str(config), "feed").stdout
    expected = len(IcsCalendarStream.calendar_from_ics(honest).events)
    assert expected == len(re.findall("^BEGIN:VEVENT", honest, re.M)) > 3
    for mode in ("surrogates", "crlf"):
        canvas.mode = mode
        done = calbridge("sync", "-c", str(config), "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        text = calbridge("render", "-c", str(config), "feed").stdout
        assert len(IcsCalendarStream.calendar_from_ics(text).events) == expected
        assert len(icalendar.Calendar.from_ical(text).walk("VEVENT")) == expected
        assert len(re.findall("^BEGIN:VEVENT", text, re.M)) == expected
        if mode == "surrogates":
            assert "\ufffd" in text
        else:
            assert "injected@evil" not in re.findall("^UID:(.*)$", text, re.M)
            assert not re.findall("^(URL|CONFERENCE)[:;]", text, re.M)


def test_surrogates_are_replaced_everywhere_in_a_model() -> None:
    from bridge.model.canvas import AppointmentGroup, Conference

    conf = Conference.model_validate(
        {"id": 1, "title": "a\ud83d", "user_settings": {"k\udc00": ["x\ud800"]}}
    )
    assert conf.title == "a\ufffd" and conf.user_settings == {"k\ufffd": ["x\ufffd"]}
    group = AppointmentGroup.model_validate(
        {
            "id": 2,
            "context_codes": ["course_1\ud83d"],
            "appointments": [{"id": 3, "comments": "\ud83d"}],
        }
    )
    assert group.appointments[0].comments == "\ufffd"
    assert group.context_codes == ("course_1\ufffd",)
    group.model_dump_json()
    assert Conference.model_validate({"id": 4, "title": "ok 😀"}).title == "ok 😀"  # pairs stay


def test_retry_after_forms() -> None:
    import httpx

    from bridge.canvas.transport import _retry_after

    now = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)

    def seconds(value: str) -> float | None:
        return _retry_after(httpx.Response(429, headers={"Retry-After": value}), now)

    assert seconds("7") == 7.0
    assert seconds("Mon, 02 Mar 2026 12:00:30 GMT") == 30.0
    assert seconds("Mon, 02 Mar 2026 11:00:00 GMT") == 0.0  # in the past: at once
    assert seconds("Mon, 02 Mar 2026 12:00:30 -0000") == 30.0
    assert seconds("soon") is None and seconds("-5") == 0.0
