"""The pure part of write-back: detecting what the person did, and what it means for Canvas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import icalendar
import pytest

from bridge.errors import CalendarDataError
from bridge.mapping import CalEvent, EventVersion, render_event_ics
from bridge.mapping.merge import merge_person_additions
from bridge.model.canvas import AccountSnapshot
from bridge.writeback.detect import Edit, detect
from bridge.writeback.rules import Cancel, Hide, Keep, Rebook, Restore, decide
from tests.helpers.clients import ClientFile, catalogue

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


def moved(
    corpus: dict[str, ClientFile], name: str, minutes: int, event: CalEvent | None = None
) -> str:
    """``name`` of the client corpus: the app's copy of ``event``, dragged ``minutes`` later."""
    ours = event or booking()
    return corpus[name].text(ics(ours), start=ours.start + timedelta(minutes=minutes))


def test_detects_deletion_move_and_additions(client_corpus: dict[str, ClientFile]) -> None:
    ours = ics(booking())
    assert detect(ours, None).kind == "deleted"
    move = detect(ours, moved(client_corpus, "ios-move-tzid.ics", 20))
    assert (move.kind, move.start) == ("moved", START + timedelta(minutes=20))
    # the same instants in Berlin time, plus Apple's alarm: not a move, not a text change
    assert detect(ours, moved(client_corpus, "ios-move-tzid.ics", 0)) == Edit("additions")
    google = client_corpus["google-reminder-meet-link.ics"].text(ours)
    assert detect(ours, google) == Edit("additions")
    renamed = ours.replace("SUMMARY:Office hours", "SUMMARY:Coffee")
    assert detect(ours, renamed) == Edit("changed", fields=("SUMMARY",))
    all_day = client_corpus["thunderbird-all-day.ics"].text(ours)
    assert detect(ours, all_day) == Edit("retimed")


@pytest.mark.parametrize(
    ("theirs", "expected"),
    [
        (None, Cancel),
        ("move20", Rebook),  # slot 51 has room
        ("move40", Restore),  # slot 52 is full
        ("move7", Restore),  # no slot there
    ],
)
def test_booking_rules(
    client_corpus: dict[str, ClientFile], theirs: str | None, expected: type
) -> None:
    minutes = None if theirs is None else int(theirs.removeprefix("move"))
    body = None if minutes is None else moved(client_corpus, "ios-move-tzid.ics", minutes)
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


def test_off_past_and_conference_rules(client_corpus: dict[str, ClientFile]) -> None:
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
            detect(ics(conf), moved(client_corpus, "ios-move-tzid.ics", 20, conf)),
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


# --- every file of the client corpus, for a booking -----------------------------------------


def rule_for(body: str) -> object:
    return decide(
        detect(ics(booking()), body, "phone/booking.ics"),
        booking(),
        SNAPSHOT,
        writeback_enabled=True,
        target_id="phone",
        now=NOW,
    )


@pytest.mark.parametrize("name", sorted(catalogue()))
def test_each_client_file_for_a_booking(client_corpus: dict[str, ClientFile], name: str) -> None:
    """What the README's table promises for each app's copy of a booking (slot 51 is open 20
    minutes later, none at 7 minutes later)."""
    client = client_corpus[name]
    ours = ics(booking())
    if client.edit == "not-utf-8":  # reaches calbridge only as a server decoded it: end to end
        with pytest.raises(UnicodeDecodeError):
            client.text(ours)
        return
    if client.edit == "malformed":
        with pytest.raises(CalendarDataError, match=r"phone/booking\.ics: unknown time zone"):
            detect(ours, client.text(ours), "phone/booking.ics")
        return
    same_time = rule_for(client.text(ours))
    if client.edit in ("move", "additions"):
        # any app's copy can be dragged: its times are read in whatever form it writes them
        assert same_time == Keep()
        assert rule_for(moved(client_corpus, name, 20)) == Rebook(
            5, 51, START + timedelta(minutes=20)
        )
        assert rule_for(moved(client_corpus, name, 7)) == Restore(
            "no open slot of 'Office hours' at 2026-03-04 12:07 UTC"
        )
    elif client.edit == "all-day":
        assert same_time == Restore("a booking cannot become an all-day event")
    elif client.edit == "recurrence":
        assert same_time == Restore(
            "a booking cannot repeat; Canvas books one appointment at a time"
        )
        # what is put back: Canvas's one appointment, with nothing of the repetition
        back = icalendar.Calendar.from_ical(merge_person_additions(ours, client.text(ours)))
        (event,) = back.walk("VEVENT")
        assert not {"RRULE", "RDATE", "EXDATE", "RECURRENCE-ID"} & set(event)
    else:
        raise AssertionError(f"{name}: no expectation for edit {client.edit!r}")
