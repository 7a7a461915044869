"""Versions move only on real change; VTIMEZONEs are RRULE-based and match zoneinfo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest

from bridge.mapping import render_event_ics, render_feed
from bridge.mapping.timezones import vtimezone_lines
from bridge.model.canvas import AccountSnapshot
from tests.helpers.mapping import CORPUS
from tests.helpers.options import feed_options
from tests.helpers.validators import assert_valid

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
ALL = frozenset({"conferences", "reservations", "open_slots"})


def student() -> AccountSnapshot:
    return AccountSnapshot.model_validate_json(
        (CORPUS / "simulator-sample-student.json").read_text()
    )


def test_unchanged_data_renders_byte_identical_later() -> None:
    first = render_feed(student(), feed_options(include=ALL), {}, NOW)
    again = render_feed(
        student(), feed_options(include=ALL), first.versions, NOW + timedelta(hours=5)
    )
    assert again.ics == first.ics and again.versions == first.versions


def test_sequence_grows_only_for_the_changed_event() -> None:
    first = render_feed(student(), feed_options(include=ALL), {}, NOW)
    data = student().model_dump()
    office = next(g for g in data["reservable"] if g["title"] == "Office hours")
    office["location_name"] = "Room 202"
    later = NOW + timedelta(hours=1)
    second = render_feed(
        AccountSnapshot.model_validate(data), feed_options(include=ALL), first.versions, later
    )
    changed = {uid for uid, v in second.versions.items() if v != first.versions[uid]}
    assert changed and all("@canvas.sim" in uid for uid in changed)
    office_uids = {e.uid for e in second.events if e.appointment_group_id == office["id"]}
    assert changed == office_uids
    for uid in changed:
        assert second.versions[uid].sequence == 1 and second.versions[uid].last_modified == later
    cal = icalendar.Calendar.from_ical(second.ics)
    seqs = {str(e["UID"]): int(e["SEQUENCE"]) for e in cal.walk("VEVENT")}
    assert {u for u, s in seqs.items() if s == 1} == office_uids


def test_rebooked_reservation_keeps_its_uid() -> None:
    snap = student()
    res_id = snap.reservable[0].reserved_times[0].id
    options = feed_options(
        include=ALL, reservation_uids={res_id: "canvas-reservation-1@canvas.sim"}
    )
    feed = render_feed(snap, options, {}, NOW)
    assert "canvas-reservation-1@canvas.sim" in {e.uid for e in feed.events}


@pytest.mark.parametrize(
    "zone",
    ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "America/Sao_Paulo"],
)
def test_vtimezone_is_rrule_based_and_matches_zoneinfo(zone: str) -> None:
    lines = vtimezone_lines(zone, 2026)
    assert not any(line.startswith("RDATE") for line in lines)
    cal = icalendar.Calendar.from_ical(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n"
        + "\r\n".join(lines)
        + f"\r\nBEGIN:VEVENT\r\nUID:u\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;TZID={zone}:20260101T120000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    tz = cal.walk("VTIMEZONE")[0].to_tz(lookup_tzid=False)
    zi = ZoneInfo(zone)
    for month in range(1, 13):
        for year in (2026, 2027):
            instant = datetime(year, month, 15, 12, tzinfo=UTC)
            assert instant.astimezone(tz).utcoffset() == instant.astimezone(zi).utcoffset(), (
                zone,
                year,
                month,
            )


def test_single_event_calendar_for_caldav() -> None:
    feed = render_feed(student(), feed_options(include=ALL), {}, NOW)
    event = feed.events[0]
    text = render_event_ics(
        event, feed.versions[event.uid], feed_options(timezone="Europe/Berlin"), NOW
    )
    assert assert_valid(text) == 1
    assert "METHOD" not in text and "ORGANIZER" not in text and "BEGIN:VTIMEZONE" in text
