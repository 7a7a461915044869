"""Keeping what the person added when Canvas's version is written back over their copy.

Canvas owns what it says about an event (time, title, description, place, link, status); the
person owns everything else they put on it: alarms, categories, a colour, app-specific
properties (X-APPLE-*, X-MOZ-*, X-GOOGLE-*), attendees they invited. The merge takes Canvas's
new version and carries those over from their copy.
"""

from __future__ import annotations

from typing import Any

from bridge.mapping.ics_reader import guarded, parse

CANVAS_OWNED = {
    "UID",
    "SUMMARY",
    "DESCRIPTION",
    "LOCATION",
    "DTSTART",
    "DTEND",
    "DURATION",
    "URL",
    "CONFERENCE",
    "STATUS",
    "TRANSP",
    "CLASS",
    "DTSTAMP",
    "LAST-MODIFIED",
    "SEQUENCE",
    "ORGANIZER",
    "RRULE",
    "RDATE",
    "EXDATE",
    "RECURRENCE-ID",
    "X-CALBRIDGE-KIND",
    "X-ALT-DESC",
}


def merge_person_additions(ours_ics: str, theirs_ics: str, context: str = "") -> str:
    """Canvas's version (``ours``) plus what the person added in ``theirs``.

    Raises CalendarDataError (only) when their copy cannot be read or merged."""
    return guarded(context, lambda: _merge(ours_ics, theirs_ics, context))


def _merge(ours_ics: str, theirs_ics: str, context: str) -> str:
    ours = parse(ours_ics, context)
    theirs_event = parse(theirs_ics, context).walk("VEVENT")[0]
    event = ours.walk("VEVENT")[0]
    for name in list(theirs_event):
        if name in CANVAS_OWNED:
            continue
        if name == "CATEGORIES":
            mine = {str(c) for cats in _list(event.get("CATEGORIES")) for c in cats.cats}
            theirs = [str(c) for cats in _list(theirs_event["CATEGORIES"]) for c in cats.cats]
            merged = list(dict.fromkeys([*sorted(mine), *theirs]))
            event.pop("CATEGORIES", None)
            event.add("CATEGORIES", merged)
            continue
        event.pop(name, None)
        for value in _list(theirs_event[name]):
            event.add(name, value)
    alarms = [c for c in theirs_event.subcomponents if c.name == "VALARM"]
    if alarms:  # the person's alarms replace ours (they may have removed our default)
        event.subcomponents = [c for c in event.subcomponents if c.name != "VALARM"] + alarms
    theirs_seq = int(theirs_event.get("SEQUENCE", 0))
    if int(event.get("SEQUENCE", 0)) <= theirs_seq:
        event.pop("SEQUENCE", None)
        event.add("SEQUENCE", theirs_seq + 1)
    return ours.to_ical().decode()


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
