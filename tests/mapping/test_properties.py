"""Property: any Canvas data the models accept renders to a feed the strict parser accepts,
and text fields survive the round trip through escaping and folding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import icalendar
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.mapping import render_event_ics, render_feed
from bridge.mapping.text import clean
from bridge.model.canvas import AccountSnapshot
from tests.helpers.options import feed_options
from tests.helpers.validators import own_errors, strict_ical

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
# Everything a person may type: punctuation iCalendar escapes, emoji, RTL, CJK, control chars.
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(",;:\\\"'\n\r\t<>&é€😀🎥שלוםمرحبا日本")),
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
    ),
    max_size=120,
)
TIMES = st.datetimes(
    min_value=datetime(2026, 2, 1), max_value=datetime(2026, 6, 1), timezones=st.just(UTC)
)


@st.composite
def snapshots(draw: st.DrawFn) -> AccountSnapshot:
    conferences = []
    for i in range(draw(st.integers(0, 3))):
        start = draw(st.one_of(st.none(), TIMES))
        conferences.append(
            {
                "id": i + 1,
                "title": draw(TEXT),
                "description": draw(st.one_of(st.none(), TEXT)),
                "start_at": start,
                "started_at": draw(st.one_of(st.none(), TIMES)),
                "duration": draw(st.one_of(st.none(), st.integers(0, 600))),
                "url": draw(
                    st.sampled_from([None, "https://canvas.example.edu/courses/1/conferences/1"])
                ),
                "recordings": [{"title": draw(TEXT), "playback_url": "https://x.example/p"}],
                "ended_at": draw(st.one_of(st.none(), TIMES)),
            }
        )
    groups = []
    for g in range(draw(st.integers(0, 3))):
        slots, reserved = [], []
        for s in range(draw(st.integers(0, 3))):
            start = draw(TIMES)
            end = start + timedelta(minutes=draw(st.integers(0, 90)))
            sid = 1000 + g * 10 + s
            is_mine = draw(st.booleans())
            slots.append(
                {
                    "id": sid,
                    "start_at": start,
                    "end_at": end,
                    "appointment_group_id": g + 1,
                    "reserved": is_mine,
                    "reserve_comments": draw(TEXT) if is_mine else None,
                    "available_slots": draw(st.one_of(st.none(), st.integers(0, 3))),
                }
            )
            if is_mine:
                reserved.append({"id": 5000 + sid, "start_at": start, "end_at": end})
        groups.append(
            {
                "id": g + 1,
                "title": draw(TEXT),
                "description": draw(st.one_of(st.none(), TEXT)),
                "location_name": draw(st.one_of(st.none(), TEXT)),
                "location_address": draw(st.one_of(st.none(), TEXT)),
                "appointments": slots,
                "reserved_times": reserved,
            }
        )
    return AccountSnapshot.model_validate(
        {
            "canvas_host": "canvas.example.edu",
            "fetched_at": NOW,
            "user": {"id": 1, "name": draw(TEXT)},
            "conferences": conferences,
            "reservable": groups,
            "manageable": [],
        }
    )


def _expected(text: str) -> str:
    return clean(text)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(), st.sampled_from([None, "Europe/Berlin", "America/New_York"]), TEXT)
def test_any_snapshot_renders_a_strictly_valid_feed(
    snapshot: AccountSnapshot, zone: str | None, name: str
) -> None:
    options = feed_options(
        name=name or "x",
        include=frozenset({"conferences", "reservations", "open_slots"}),
        timezone=zone,
        window_past=timedelta(days=3650),
        window_future=timedelta(days=3650),
    )
    feed = render_feed(snapshot, options, {}, NOW)
    text = feed.ics.decode()
    assert strict_ical(text) == len(feed.events)
    assert own_errors(text) == []
    parsed = {str(e["UID"]): e for e in icalendar.Calendar.from_ical(text).walk("VEVENT")}
    for event in feed.events:
        vevent = parsed[event.uid]
        assert str(vevent["SUMMARY"]) == _expected(event.summary)
        if event.description:
            assert str(vevent["DESCRIPTION"]) == _expected(event.description)
        if event.location:
            assert str(vevent["LOCATION"]) == _expected(event.location)
        single = render_event_ics(event, feed.versions[event.uid], options, NOW)
        assert strict_ical(single) == 1
