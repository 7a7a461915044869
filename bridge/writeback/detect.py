"""What did the person do to an event calbridge wrote? Pure: two ICS texts in, an Edit out.

Times are compared as instants, whatever form the calendar app wrote them in: UTC, a TZID with
or without its VTIMEZONE (resolved with zoneinfo), DTEND or DURATION. A timed event turned into
an all-day one is a change of time, never a move onto a slot; so is one made to repeat (an RRULE,
RDATE or EXDATE, or a second VEVENT overriding one instance), which Canvas has no way to say.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.errors import CalendarDataError
from bridge.mapping.ics_reader import fingerprint, guarded, parse, vevent

EditKind = Literal["deleted", "moved", "retimed", "changed", "additions", "unchanged"]
CANVAS_TEXT = ("SUMMARY", "DESCRIPTION", "LOCATION", "URL")
RECURRENCE = ("RRULE", "RDATE", "EXDATE")


@dataclass(frozen=True)
class Edit:
    kind: EditKind
    start: datetime | None = None
    end: datetime | None = None
    fields: tuple[str, ...] = ()


def _instant(prop: Any, context: str) -> datetime | date | None:
    if prop is None:
        return None
    value = prop.dt
    if isinstance(value, datetime):
        if value.tzinfo is None:
            tzid = prop.params.get("TZID")
            if tzid:
                try:
                    value = value.replace(tzinfo=ZoneInfo(str(tzid)))
                except (ZoneInfoNotFoundError, ValueError):
                    raise CalendarDataError(
                        f"unknown time zone {tzid!r}", context=context
                    ) from None
            else:
                value = value.replace(tzinfo=UTC)  # floating: read as UTC, like Google and Apple do
        return value.astimezone(UTC)
    return value  # a date: all-day


def times(ics: str, context: str = "") -> tuple[datetime | date | None, datetime | date | None]:
    event = vevent(ics, context)
    start = _instant(event.get("DTSTART"), context)
    end = _instant(event.get("DTEND"), context)
    if end is None and start is not None:
        duration = event.get("DURATION")
        end = start + duration.dt if duration is not None else start
    return start, end


def _text(event: Any, name: str) -> str:
    value = event.get(name)
    return " ".join(str(value).split()) if value is not None else ""


def detect(ours_ics: str, theirs_ics: str | None, context: str = "") -> Edit:
    """Raises CalendarDataError (only) when either copy cannot be read."""
    return guarded(context, lambda: _detect(ours_ics, theirs_ics, context))


def _detect(ours_ics: str, theirs_ics: str | None, context: str) -> Edit:
    if theirs_ics is None:
        return Edit("deleted")
    repeats = _recurrence(theirs_ics, context)
    if repeats and repeats != _recurrence(ours_ics, context):
        return Edit("retimed", fields=repeats)
    our_start, our_end = times(ours_ics, context)
    start, end = times(theirs_ics, context)
    if (start, end) != (our_start, our_end):
        if not isinstance(start, datetime) or not isinstance(end, datetime):
            return Edit("retimed")
        return Edit("moved", start, end)
    ours, theirs = vevent(ours_ics, context), vevent(theirs_ics, context)
    changed = tuple(name for name in CANVAS_TEXT if _text(ours, name) != _text(theirs, name))
    if changed:
        return Edit("changed", fields=changed)
    if fingerprint(ours_ics, context) != fingerprint(theirs_ics, context):
        return Edit("additions")
    return Edit("unchanged")


def _recurrence(ics: str, context: str) -> tuple[str, ...]:
    """What makes the object repeat: its recurrence properties, and RECURRENCE-ID when it holds
    more than one VEVENT (an app's override of one instance)."""
    events = parse(ics, context).walk("VEVENT")
    found = {name for event in events for name in RECURRENCE if name in event}
    if len(events) > 1:
        found.add("RECURRENCE-ID")
    return tuple(sorted(found))


def same_times(
    a: datetime | None, b: datetime | None, tolerance: timedelta = timedelta(seconds=59)
) -> bool:
    return a is not None and b is not None and abs(a - b) <= tolerance
