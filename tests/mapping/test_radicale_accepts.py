"""Radicale, the strictest CalDAV server, accepts every event of every corpus case as its own
resource (one VEVENT per PUT), and gives it back unchanged in meaning."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import icalendar
import pytest

from bridge.mapping import render_event_ics, render_feed
from tests.helpers.mapping import CASES, build
from tests.helpers.servers import Server, radicale


@pytest.fixture(scope="module")
def dav(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with radicale(tmp_path_factory.mktemp("radicale")) as server:
        yield server


@pytest.mark.parametrize("name", sorted(CASES))
def test_radicale_accepts_each_event(dav: Server, name: str, tmp_path: Path) -> None:
    snapshot, options, now = build(CASES[name])
    feed = render_feed(snapshot, options, {}, now)  # type: ignore[arg-type]
    collection = f"{dav.home}{name}/"
    with httpx.Client(auth=(dav.username, dav.password)) as http:
        made = http.request("MKCALENDAR", collection)
        assert made.status_code == 201, made.text
        for event in feed.events:
            body = render_event_ics(event, feed.versions[event.uid], options, now)  # type: ignore[arg-type]
            href = f"{collection}{hashlib.sha1(event.uid.encode()).hexdigest()}.ics"
            put = http.put(
                href,
                content=body,
                headers={"Content-Type": "text/calendar; charset=utf-8", "If-None-Match": "*"},
            )
            assert put.status_code == 201, f"{event.uid}: {put.status_code} {put.text}"
            back = icalendar.Calendar.from_ical(http.get(href).text).walk("VEVENT")[0]
            assert (
                str(back["UID"]) == event.uid
                and str(back["SUMMARY"])
                == icalendar.Calendar.from_ical(body).walk("VEVENT")[0]["SUMMARY"]
            )
