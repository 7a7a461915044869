"""Writing iCalendar text (RFC 5545 / RFC 7986) straight from :class:`CalEvent` values.

Written by hand rather than through icalendar's object model because a feed may hold 10,000
events and is re-rendered every poll; every line goes through :func:`escape` and :func:`fold`,
and the output is checked by the strict ``ical`` parser, libical and Radicale in the tests.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from bridge.mapping.text import checked_uri, escape, fold
from bridge.mapping.versions import EventVersion
from bridge.model.event import CalEvent

PRODID = "-//calbridge//Canvas conferences and bookings//EN"


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _when(name: str, value: datetime | date, tzid: str | None) -> str:
    if not isinstance(value, datetime):
        return f"{name};VALUE=DATE:{value:%Y%m%d}"
    if tzid is None:
        return f"{name}:{_utc(value)}"
    local = value.astimezone(ZoneInfo(tzid))
    return f"{name};TZID={tzid}:{local:%Y%m%dT%H%M%S}"


def _before(delta: timedelta) -> str:
    """A TRIGGER ``delta`` before the start."""
    minutes = int(delta.total_seconds() // 60)
    return f"-PT{minutes}M" if minutes else "PT0M"


def vevent(
    event: CalEvent,
    version: EventVersion,
    tzid: str | None = None,
    alarm: timedelta | None = None,
    organizer: str | None = None,
) -> str:
    """One VEVENT, folded, CRLF-terminated.

    ``organizer`` (a Canvas host) is set in published feeds: RFC 5546 requires ORGANIZER in a
    METHOD:PUBLISH VEVENT, and libical's iTIP check enforces it. CalDAV resources carry no
    METHOD and so no ORGANIZER, which keeps phones from treating them as invitations.
    """
    lines = [
        "BEGIN:VEVENT",
        f"UID:{escape(event.uid)}",
        f"DTSTAMP:{_utc(version.dtstamp)}",
        f"LAST-MODIFIED:{_utc(version.last_modified)}",
        f"SEQUENCE:{version.sequence}",
        _when("DTSTART", event.start, tzid),
    ]
    if event.end != event.start:  # zero-length: no DTEND (RFC 5545 §3.6.1), not DTEND = DTSTART
        lines.append(_when("DTEND", event.end, tzid))
    lines.append(f"SUMMARY:{escape(event.summary)}")
    if organizer:
        domain = organizer.split(":")[0]  # a host may carry a port; an address may not
        lines.append(f'ORGANIZER;CN="Canvas ({organizer})":mailto:no-reply@{domain}')
    if event.description:
        lines.append(f"DESCRIPTION:{escape(event.description)}")
    if event.location:
        lines.append(f"LOCATION:{escape(event.location)}")
    # URI values are written raw (RFC 5545 has no escaping for them): only checked ones.
    url = checked_uri(event.url, event.uid, "URL")
    if url:
        lines.append(f"URL:{url}")
    conference = checked_uri(event.conference_uri, event.uid, "CONFERENCE")
    if conference:
        lines.append(f"CONFERENCE;VALUE=URI;FEATURE=VIDEO;LABEL=Join:{conference}")
    lines.append(f"STATUS:{event.status}")
    lines.append(f"TRANSP:{'TRANSPARENT' if event.transparent else 'OPAQUE'}")
    if event.categories:
        lines.append("CATEGORIES:" + ",".join(escape(c) for c in event.categories))
    lines.append("CLASS:PUBLIC")
    lines.append(f"X-CALBRIDGE-KIND:{event.kind}")
    if alarm is not None:
        lines += [
            "BEGIN:VALARM",
            "ACTION:DISPLAY",
            f"DESCRIPTION:{escape(event.summary)}",
            f"TRIGGER:{_before(alarm)}",
            "END:VALARM",
        ]
    lines.append("END:VEVENT")
    return "".join(fold(line) for line in lines)


def calendar_header(
    *,
    name: str,
    description: str | None,
    refresh: timedelta,
    color: str | None,
    method: bool = True,
) -> str:
    minutes = max(int(refresh.total_seconds() // 60), 1)
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN"]
    if method:
        lines.append("METHOD:PUBLISH")
    lines += [f"NAME:{escape(name)}", f"X-WR-CALNAME:{escape(name)}"]
    if description:
        lines += [f"DESCRIPTION:{escape(description)}", f"X-WR-CALDESC:{escape(description)}"]
    lines += [f"REFRESH-INTERVAL;VALUE=DURATION:PT{minutes}M", f"X-PUBLISHED-TTL:PT{minutes}M"]
    if color:
        if color.startswith("#"):
            lines.append(f"X-APPLE-CALENDAR-COLOR:{color}")
        else:
            lines.append(f"COLOR:{escape(color)}")
    return "".join(fold(line) for line in lines)


def minimal_header() -> str:
    return "".join(fold(line) for line in ("BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}"))


FOOTER = "END:VCALENDAR\r\n"
