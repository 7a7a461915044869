"""CalDAV fixtures: each real server started by the tests, and desired events built by the
real renderer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.dav.discovery import TargetSettings
from bridge.mapping import CalEvent, EventVersion, render_event_ics
from bridge.sync.plan import DesiredItem
from tests.helpers import options
from tests.servers import SERVERS, Server

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    with SERVERS[request.param](tmp_path / request.param) as started:
        yield started


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
