"""Hostile or awkward calendar data: URL injection, folds that split escapes, HTML structure,
irregular time zones. Every output is read back by real parsers (``ical``, icalendar)."""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ical.calendar_stream import IcsCalendarStream

from bridge.mapping import ics_writer, render_event_ics
from bridge.mapping.text import clean, escape, fold, html_to_text, safe_uri
from bridge.mapping.timezones import vtimezone_lines
from bridge.mapping.versions import EventVersion
from bridge.model.event import CalEvent
from tests.helpers.options import feed_options

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
VERSION = EventVersion("u1@canvas.sim", "h", 0, NOW, NOW)
INJECTION = "https://evil.example/j\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:injected\r\nSUMMARY:x"


def calendar(*vevents: str, extra: str = "") -> str:
    return ics_writer.minimal_header() + extra + "".join(vevents) + ics_writer.FOOTER


def event(**kw: object) -> CalEvent:
    values: dict[str, object] = {
        "uid": "u1@canvas.sim",
        "kind": "conference",
        "summary": "Lecture",
        "start": NOW,
        "end": NOW + timedelta(hours=1),
    }
    values.update(kw)
    return CalEvent(**values)  # type: ignore[arg-type]


# --- URL and CONFERENCE ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "link",
    [
        INJECTION,
        "https://evil.example/j\nEND:VEVENT",
        "https://evil.example/j\x00x",
        "https://evil.example/a b",
        "javascript:alert(1)",
        "data:text/html,<script>",
        "file:///etc/passwd",
        "https://",
        "zoommtg://zoom.us/join?confno=1",
    ],
)
def test_unsafe_links_are_left_out_and_logged(link: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    uid = f"u{abs(hash(link))}@canvas.sim"  # a warning is logged once per event and property
    text = ics_writer.vevent(event(uid=uid, url=link, conference_uri=link), VERSION)
    assert "\r\nURL" not in text and "\r\nCONFERENCE" not in text
    parsed = IcsCalendarStream.calendar_from_ics(calendar(text))
    assert [e.uid for e in parsed.events] == [uid]
    loose = icalendar.Calendar.from_ical(calendar(text))
    assert [str(e["UID"]) for e in loose.walk("VEVENT")] == [uid]
    messages = [r.getMessage() for r in caplog.records]
    assert any(uid in m and "URL left out" in m for m in messages)
    assert any(uid in m and "CONFERENCE left out" in m for m in messages)
    assert not any(link in r.getMessage() for r in caplog.records)  # not echoed into logs


def test_safe_links_are_written() -> None:
    link = "https://canvas.example.edu/courses/2/conferences/7/join?x=1&y=%0A"
    text = ics_writer.vevent(event(url=link, conference_uri=link), VERSION)
    loose = icalendar.Calendar.from_ical(calendar(text)).walk("VEVENT")[0]
    assert str(loose["URL"]) == link and str(loose["CONFERENCE"]) == link
    assert safe_uri("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080/x"
    assert safe_uri(INJECTION) is None and safe_uri(None) is None


# --- fold -----------------------------------------------------------------------------------


def unfold(text: str) -> str:
    return text.replace("\r\n ", "")


def check_fold(line: str) -> None:
    folded = fold(line)
    assert folded.endswith("\r\n")
    physical = folded[:-2].split("\r\n")
    for number, part in enumerate(physical):
        raw = part.encode("utf-8")  # a split character would not have survived decoding
        assert len(raw) <= 75, (number, part)
        content = part[1:] if number else part
        run = len(content) - len(content.rstrip("\\"))
        assert run % 2 == 0, f"line {number} ends inside an escape: {part!r}"
        if number:
            assert part.startswith(" ")
    assert unfold(folded[:-2]) == line


def test_an_escape_is_never_split_at_the_fold() -> None:
    """The case icalendar #1501 fixed: ``\\`` ends one line and ``n`` starts the next."""
    for pad in range(60, 80):
        line = "DESCRIPTION:" + "x" * pad + escape("a\nb; c, d\\e")
        check_fold(line)
    line = "DESCRIPTION:" + "x" * 62 + "\\n"  # the backslash is octet 75
    assert fold(line).split("\r\n")[0].endswith("x")


# Dense in what escaping and folding must respect: escapes, and 2-, 3- and 4-octet characters.
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("\\;,\n:x é€😀日")),
        st.sampled_from(list("\\;,\n")),
        st.characters(exclude_categories=("Cs",)),
    ),
    min_size=20,
    max_size=400,
)


@settings(max_examples=400, deadline=None)
@given(
    prefix=st.sampled_from(["DESCRIPTION:", "X:", "LOCATION;LANGUAGE=de:"]),
    pad=st.integers(0, 160),  # moves the text across the fold positions
    text=TEXT,
)
def test_fold_property(prefix: str, pad: int, text: str) -> None:
    check_fold(prefix + "é" * (pad % 3) + "x" * pad + escape(text))
    parsed = icalendar.Calendar.from_ical(
        calendar(ics_writer.vevent(event(description="x" * pad + text), VERSION))
    ).walk("VEVENT")[0]
    assert str(parsed.get("DESCRIPTION", "")) == clean("x" * pad + text)


# --- HTML to text ---------------------------------------------------------------------------


def test_table_cells_are_separated() -> None:
    html = "<table><tr><th>Day</th><th>Room</th></tr><tr><td>Mon</td><td>B12</td></tr></table>"
    assert html_to_text(html) == "Day | Room\nMon | B12"


def test_preformatted_text_keeps_its_whitespace() -> None:
    html = "<p>Run:</p><pre>  make test\n    --verbose\n\n  done</pre><p>Then  leave.</p>"
    assert html_to_text(html) == "Run:\n\n  make test\n    --verbose\n\n  done\n\nThen leave."


def test_list_items_are_bulleted_and_numbered() -> None:
    html = (
        "<ul><li>Bring notes</li><li>Questions<ul><li>about HW1</li></ul></li></ul>"
        "<ol><li>first</li><li>second</li></ol>"
    )
    assert html_to_text(html) == (
        "• Bring notes\n• Questions\n  • about HW1\n\n1. first\n2. second"
    )


# --- VTIMEZONE ------------------------------------------------------------------------------


def real_transitions(zone: str, start: datetime, end: datetime) -> list[datetime]:
    zi, found, t = ZoneInfo(zone), [], start
    while t < end:
        if (t + timedelta(hours=1)).astimezone(zi).utcoffset() != t.astimezone(zi).utcoffset():
            m = t
            while m.astimezone(zi).utcoffset() == t.astimezone(zi).utcoffset():
                m += timedelta(minutes=15)
            found.append(m)
        t += timedelta(hours=1)
    return found


def parsed_zone(zone: str, lines: list[str]) -> icalendar.Timezone:
    body = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n" + "".join(fold(x) for x in lines)
    return icalendar.Calendar.from_ical(body + "END:VCALENDAR\r\n").walk("VTIMEZONE")[0]


def ical_misplaced(zone: str, lines: list[str], first: int, last: int) -> list[datetime]:
    """Local noons of every day the strict ``ical`` parser places differently from zoneinfo.
    The TZID is renamed so that the parser must use the VTIMEZONE, not its own zoneinfo."""
    renamed = [line.replace(f"TZID:{zone}", "TZID:X-Test") for line in lines]
    day, events = datetime(first, 1, 1, 12), []
    while day.year <= last:
        events.append(
            f"BEGIN:VEVENT\r\nUID:{day:%Y%m%d}\r\nDTSTAMP:20260101T000000Z\r\n"
            f"DTSTART;TZID=X-Test:{day:%Y%m%dT%H%M%S}\r\nEND:VEVENT\r\n"
        )
        day += timedelta(days=1)
    text = calendar(*events, extra="".join(fold(x) for x in renamed))
    parsed = IcsCalendarStream.calendar_from_ics(text).events
    assert len(parsed) == len(events)
    zi = ZoneInfo(zone)
    return [
        e.dtstart.replace(tzinfo=None)  # type: ignore[union-attr]
        for e in parsed
        if e.dtstart.astimezone(UTC)  # type: ignore[union-attr]
        != e.dtstart.replace(tzinfo=zi).astimezone(UTC)  # type: ignore[union-attr]
    ]


def test_casablanca_gets_explicit_transitions_every_parser_reproduces() -> None:
    zone = "Africa/Casablanca"
    lines = vtimezone_lines(zone, 2026, 2027)
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)
    transitions = real_transitions(zone, start, end)
    assert len(transitions) == 4 and transitions[2].date() == date(2027, 2, 7)
    assert transitions[3].date() == date(2027, 3, 14)
    assert not any(line.startswith("RRULE") for line in lines)
    # icalendar's own expansion of the VTIMEZONE (not its zoneinfo: lookup_tzid=False) has
    # every change at the right minute. (It errs in the minute before the very first change
    # of any VTIMEZONE when that change turns the clocks back; so that probe starts later.)
    tz = parsed_zone(zone, lines).to_tz(lookup_tzid=False)
    zi = ZoneInfo(zone)
    for n, instant in enumerate(transitions):
        before = timedelta(minutes=61 if n == 0 else 1)
        for probe in (instant - before, instant, instant + timedelta(minutes=1)):
            assert probe.astimezone(tz).utcoffset() == probe.astimezone(zi).utcoffset(), probe
    # the strict parser places a local noon on every day of the window right
    assert ical_misplaced(zone, lines, 2026, 2027) == []


def test_berlin_keeps_its_compact_rrule_over_a_long_window() -> None:
    lines = vtimezone_lines("Europe/Berlin", 2025, 2028)
    assert [x for x in lines if x.startswith("RRULE")] == [
        "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
        "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
    ]
    assert not any(re.match("DTSTART:20", x) for x in lines)
    assert ical_misplaced("Europe/Berlin", lines, 2025, 2028) == []


def test_a_zone_that_stops_dst_inside_the_window_is_explicit() -> None:
    """Mexico City dropped DST in late 2022: one rule for 2022 would be wrong for 2023."""
    lines = vtimezone_lines("America/Mexico_City", 2022, 2023)
    assert not any(line.startswith("RRULE") for line in lines)
    assert ical_misplaced("America/Mexico_City", lines, 2022, 2023) == []
    tz, zi = (
        parsed_zone("America/Mexico_City", lines).to_tz(lookup_tzid=False),
        ZoneInfo("America/Mexico_City"),
    )
    for month in range(1, 25):
        instant = datetime(2022 + (month - 1) // 12, (month - 1) % 12 + 1, 15, tzinfo=UTC)
        assert instant.astimezone(tz).utcoffset() == instant.astimezone(zi).utcoffset()


def test_a_caldav_event_in_an_irregular_year_is_placed_right() -> None:
    """The VTIMEZONE itself (expanded by icalendar; parsers that know the TZID may use their
    own zoneinfo instead) puts the event at the right instant."""
    zone = ZoneInfo("Africa/Casablanca")
    when = datetime(2027, 2, 20, 10, tzinfo=zone)  # Ramadan 2027: +00, not the 2026 rule's +01
    single = render_event_ics(
        event(start=when, end=when + timedelta(hours=1)),
        VERSION,
        feed_options(timezone="Africa/Casablanca"),
        NOW,
    )
    cal = icalendar.Calendar.from_ical(single)
    tz = cal.walk("VTIMEZONE")[0].to_tz(lookup_tzid=False)
    wall = cal.walk("VEVENT")[0].decoded("DTSTART").replace(tzinfo=None)
    assert wall == datetime(2027, 2, 20, 10)
    assert wall.replace(tzinfo=tz).astimezone(UTC) == datetime(2027, 2, 20, 10, tzinfo=UTC)
