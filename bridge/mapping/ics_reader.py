"""Reading what a CalDAV server holds: one calendar object per resource, parsed tolerantly.

Calendar apps write all sorts of things back (Apple's X-APPLE-*, Google's X-GOOGLE-*, TZIDs
with or without VTIMEZONE). Anything unparseable raises CalendarDataError naming the item, so
one broken event never stops the sync of the others. This module is that boundary: whatever
icalendar raises on a hostile object (ValueError, OverflowError, BrokenCalendarProperty, …)
leaves it as a CalendarDataError, never as anything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import icalendar

from bridge.errors import CalendarDataError

# Properties that change without the event changing: never part of a comparison.
VOLATILE = {"DTSTAMP", "LAST-MODIFIED", "SEQUENCE", "CREATED", "X-CALBRIDGE-KIND"}


def parse(ics: str, context: str = "") -> icalendar.Calendar:
    try:
        cal = icalendar.Calendar.from_ical(ics)
    except Exception as exc:  # icalendar raises many kinds on hostile input
        raise CalendarDataError(
            f"not a valid iCalendar object: {type(exc).__name__}: {exc}", context=context
        ) from None
    if not cal.walk("VEVENT"):
        raise CalendarDataError("no VEVENT in the calendar object", context=context)
    return cal


T = TypeVar("T")


def guarded(context: str, read: Callable[[], T]) -> T:
    """Run ``read`` over parsed calendar data; any error becomes a CalendarDataError that names
    the object (``context``) and the error's kind. Lazy property decoding in icalendar means a
    bad value (``SEQUENCE:abc``, a DTSTART in year 99999) fails only when it is read."""
    try:
        return read()
    except CalendarDataError:
        raise
    except Exception as exc:
        raise CalendarDataError(
            f"unreadable property: {type(exc).__name__}: {exc}", context=context
        ) from None


def vevent(ics: str, context: str = "") -> Any:
    return parse(ics, context).walk("VEVENT")[0]


def uid_of(ics: str, context: str = "") -> str | None:
    uid = guarded(context, lambda: vevent(ics, context).get("UID"))
    return str(uid) if uid is not None else None


def _value(prop: Any) -> str:
    if isinstance(prop, list):
        return "\x1f".join(sorted(_value(p) for p in prop))
    if hasattr(prop, "dt"):
        dt = prop.dt
        if isinstance(dt, datetime) and dt.tzinfo is not None:
            return dt.astimezone(UTC).isoformat()
        return dt.isoformat() if isinstance(dt, date | datetime) else str(dt)
    if hasattr(prop, "to_ical"):
        return prop.to_ical().decode(errors="replace")
    return str(prop)


def fingerprint(ics: str, context: str = "") -> str:
    """A hash of what the event says, whatever the server's serialisation (folding, order,
    TZID vs UTC) — equal for the same content, different when a person changed anything."""
    return guarded(context, lambda: _fingerprint(ics, context))


def _fingerprint(ics: str, context: str) -> str:
    event = vevent(ics, context)
    parts = [
        f"{name}={_value(event[name])}" for name in sorted(event.keys()) if name not in VOLATILE
    ]
    for sub in event.subcomponents:
        parts.append(sub.name + ":" + "|".join(f"{k}={_value(sub[k])}" for k in sorted(sub.keys())))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def event_end(ics: str) -> datetime | None:
    """The end instant (UTC) of the event, for the "past events stay" rule."""
    return guarded("", lambda: _event_end(ics))


def _event_end(ics: str) -> datetime | None:
    event = vevent(ics)
    start = event.get("DTSTART")
    end = event.get("DTEND")
    value = end.dt if end is not None else (start.dt if start is not None else None)
    if value is None:
        return None
    if not isinstance(value, datetime):
        return datetime.combine(value, datetime.min.time(), UTC) + timedelta(days=1)
    if end is None and event.get("DURATION") is not None:
        value = value + event["DURATION"].dt
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
