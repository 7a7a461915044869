"""The pure part of write-back: detecting what the person did, and what it means for Canvas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.mapping import CalEvent, EventVersion, render_event_ics
from bridge.model.canvas import AccountSnapshot
from bridge.writeback.detect import detect
from bridge.writeback.rules import Cancel, Hide, Keep, Rebook, Restore, decide

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
START = NOW + timedelta(days=2)


def ics(event: CalEvent) -> str:
    return render_event_ics(event, EventVersion(event.uid, event.content_hash(), 0, NOW, NOW))


def booking(start: datetime = START) -> CalEvent:
    return CalEvent(
        "canvas-reservation-5@c",
        "reservation",
        "Office hours",
        start,
        start + timedelta(minutes=20),
        location="Room 1",
        canvas_id=5,
        slot_id=50,
        appointment_group_id=9,
    )


SNAPSHOT = AccountSnapshot.model_validate(
    {
        "canvas_host": "c",
        "fetched_at": NOW,
        "user": {"id": 1},
        "reservable": [
            {
                "id": 9,
                "title": "Office hours",
                "appointments": [
                    {
                        "id": 50,
                        "start_at": START,
                        "end_at": START + timedelta(minutes=20),
                        "reserved": True,
                        "available_slots": 0,
                    },
                    {
                        "id": 51,
                        "start_at": START + timedelta(minutes=20),
                        "end_at": START + timedelta(minutes=40),
                        "available_slots": 1,
                    },
                    {
                        "id": 52,
                        "start_at": START + timedelta(minutes=40),
                        "end_at": START + timedelta(hours=1),
                        "available_slots": 0,
                    },
                ],
            }
        ],
    }
)


def apple_move(minutes: int, tz: str = "Europe/Berlin") -> str:
    """The event as Apple writes it back after a drag: TZID-local times with a VTIMEZONE."""
    from zoneinfo import ZoneInfo

    local = (START + timedelta(minutes=minutes)).astimezone(ZoneInfo(tz))
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Apple Inc.//iOS 18//EN\r\nBEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\n"
        "BEGIN:STANDARD\r\nDTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\n"
        "TZOFFSETTO:+0100\r\nTZNAME:CET\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\n"
        "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nTZNAME:CEST\r\nEND:DAYLIGHT\r\n"
        "END:VTIMEZONE\r\nBEGIN:VEVENT\r\nUID:canvas-reservation-5@c\r\nDTSTAMP:20260302T120000Z\r\n"
        f"DTSTART;TZID={tz}:{local:%Y%m%dT%H%M%S}\r\nDURATION:PT20M\r\nSUMMARY:Office hours\r\nLOCATION:Room 1\r\n"
        "X-APPLE-TRAVEL-ADVISORY-BEHAVIOR:AUTOMATIC\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\n"
        "X-WR-ALARMUID:1A2B\r\nEND:VALARM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def test_detects_deletion_move_and_additions() -> None:
    ours = ics(booking())
    assert detect(ours, None).kind == "deleted"
    moved = detect(ours, apple_move(20))
    assert moved.kind == "moved" and moved.start == START + timedelta(minutes=20)
    same_time = detect(ours, apple_move(0))
    assert same_time.kind in ("additions", "changed")
    google = ours.replace("END:VEVENT", "X-GOOGLE-CONFERENCE:https://meet.example\r\nEND:VEVENT")
    assert detect(ours, google).kind == "additions"
    renamed = ours.replace("SUMMARY:Office hours", "SUMMARY:Coffee")
    assert detect(ours, renamed).fields == ("SUMMARY",)
    all_day = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:canvas-reservation-5@c\r\nDTSTAMP:20260302T120000Z\r\nDTSTART;VALUE=DATE:20260304\r\nSUMMARY:Office hours\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    assert detect(ours, all_day).kind == "retimed"


@pytest.mark.parametrize(
    ("theirs", "expected"),
    [
        (None, Cancel),
        ("move20", Rebook),  # slot 51 has room
        ("move40", Restore),  # slot 52 is full
        ("move7", Restore),  # no slot there
    ],
)
def test_booking_rules(theirs: str | None, expected: type) -> None:
    body = None if theirs is None else apple_move(int(theirs.removeprefix("move")))
    decision = decide(
        detect(ics(booking()), body),
        booking(),
        SNAPSHOT,
        writeback_enabled=True,
        target_id="phone",
        now=NOW,
    )
    assert isinstance(decision, expected)
    if isinstance(decision, Rebook):
        assert (decision.from_reservation_id, decision.to_slot_id) == (5, 51)


def test_off_past_and_conference_rules() -> None:
    deleted = detect(ics(booking()), None)
    assert isinstance(
        decide(deleted, booking(), SNAPSHOT, writeback_enabled=False, target_id="phone", now=NOW),
        Restore,
    )
    past = booking(NOW - timedelta(days=1))
    assert (
        "ended"
        in decide(
            deleted, past, SNAPSHOT, writeback_enabled=True, target_id="phone", now=NOW
        ).reason
    )  # type: ignore[union-attr]
    conf = CalEvent(
        "canvas-conference-1@c",
        "conference",
        "Lecture",
        START,
        START + timedelta(hours=1),
        canvas_id=1,
    )
    assert isinstance(
        decide(deleted, conf, SNAPSHOT, writeback_enabled=True, target_id="phone", now=NOW), Hide
    )
    assert isinstance(
        decide(
            detect(ics(conf), apple_move(20)),
            conf,
            SNAPSHOT,
            writeback_enabled=True,
            target_id="phone",
            now=NOW,
        ),
        Restore,
    )
    additions = detect(
        ics(booking()), ics(booking()).replace("END:VEVENT", "CATEGORIES:Study\r\nEND:VEVENT")
    )
    assert isinstance(
        decide(additions, booking(), SNAPSHOT, writeback_enabled=True, target_id="phone", now=NOW),
        Keep,
    )
