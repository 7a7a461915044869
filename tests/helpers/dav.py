"""Desired events built by the real renderer, and CalDAV settings for a test server."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import httpx
import icalendar

from bridge.dav.discovery import TargetSettings
from bridge.mapping import CalEvent, EventVersion, render_event_ics
from bridge.sync.plan import DesiredItem
from tests.helpers import options
from tests.helpers.servers import Server

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


def target_settings(server: Server, calendar: str = "Canvas") -> TargetSettings:
    return options.target_settings(
        "phone",
        server.url,
        server.username,
        server.password,
        calendar=calendar,
        color="#1f6feb",
        timeout=10,
    )


def event(n: int, summary: str | None = None, start: datetime | None = None) -> CalEvent:
    begin = start or NOW + timedelta(days=1, hours=n)
    return CalEvent(
        uid=f"canvas-reservation-{n}@canvas.test",
        kind="reservation",
        summary=summary or f"Office hours {n}",
        start=begin,
        end=begin + timedelta(minutes=20),
        description=f"Slot {n}",
        location="Room 101",
        canvas_id=n,
        slot_id=1000 + n,
        appointment_group_id=7,
    )


def desired(*events: CalEvent) -> dict[str, DesiredItem]:
    out = {}
    for e in events:
        h = e.content_hash()
        ics = render_event_ics(e, EventVersion(e.uid, h, 0, NOW, NOW))
        out[e.uid] = DesiredItem(e.uid, ics, h)
    return out


def server_uids(server: Server, collection: str) -> list[str]:
    """Every UID on the server, by reading each resource (duplicates stay visible)."""
    body = (
        '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>'
    )
    with httpx.Client(auth=auth(server)) as http:
        listing = http.request(
            "PROPFIND",
            collection,
            headers={"Depth": "1", "Content-Type": "application/xml"},
            content=body,
        ).content
        hrefs = [
            h.text or ""
            for h in ET.fromstring(listing).iter("{DAV:}href")
            if (h.text or "").endswith(".ics")
        ]
        uids = []
        for href in hrefs:
            cal = icalendar.Calendar.from_ical(http.get(httpx.URL(collection).join(href)).text)
            uids += [str(e["UID"]) for e in cal.walk("VEVENT")]
    return uids


def auth(server: Server) -> httpx.Auth:
    return (
        httpx.DigestAuth(server.username, server.password)
        if server.auth == "digest"
        else httpx.BasicAuth(server.username, server.password)
    )
