"""VTIMEZONE components Outlook reads correctly: RRULE-based, built from zoneinfo.

icalendar generates VTIMEZONEs as lists of RDATEs, which Outlook mishandles (one-hour shifts,
the wrong zone name; calendar-clients.md §1.6). This builds the compact 1970-anchored form with
one yearly RRULE per observance, taken from the zone's transitions in the reference year.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

_DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]


def _offset(delta: timedelta | None) -> str:
    seconds = int((delta or timedelta(0)).total_seconds())
    sign = "+" if seconds >= 0 else "-"
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600:02d}{seconds % 3600 // 60:02d}"


def _transitions(zone: ZoneInfo, year: int) -> list[datetime]:
    """UTC instants in ``year`` where the zone's offset changes (hour resolution, then minute)."""
    found = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    previous = t.astimezone(zone).utcoffset()
    while t < end:
        nxt = t + timedelta(hours=1)
        if nxt.astimezone(zone).utcoffset() != previous:
            m = t
            while m.astimezone(zone).utcoffset() == previous:
                m += timedelta(minutes=15)
            found.append(m)
            previous = nxt.astimezone(zone).utcoffset()
        t = nxt
    return found


def _rule(local: datetime) -> tuple[str, datetime]:
    """The RRULE for "the nth (or last) weekday of the month" and its 1970 DTSTART."""
    days_in_month = calendar.monthrange(local.year, local.month)[1]
    weekday = local.weekday()
    nth = -1 if local.day + 7 > days_in_month else (local.day - 1) // 7 + 1
    rrule = f"FREQ=YEARLY;BYMONTH={local.month};BYDAY={nth}{_DAYS[weekday]}"
    month_days = [
        d
        for d in range(1, calendar.monthrange(1970, local.month)[1] + 1)
        if calendar.weekday(1970, local.month, d) == weekday
    ]
    day = month_days[-1] if nth == -1 else month_days[nth - 1]
    return rrule, datetime(1970, local.month, day, local.hour, local.minute)


def vtimezone_lines(tzid: str, year: int) -> list[str]:
    """The VTIMEZONE of ``tzid`` as unfolded content lines."""
    zone = ZoneInfo(tzid)
    lines = ["BEGIN:VTIMEZONE", f"TZID:{tzid}"]
    transitions = _transitions(zone, year)
    if len(transitions) != 2:  # no DST (or an irregular year): one fixed observance
        now = datetime(year, 7, 1, tzinfo=UTC).astimezone(zone)
        off = _offset(now.utcoffset())
        lines += [
            "BEGIN:STANDARD",
            "DTSTART:19700101T000000",
            f"TZOFFSETFROM:{off}",
            f"TZOFFSETTO:{off}",
            f"TZNAME:{now.tzname()}",
            "END:STANDARD",
            "END:VTIMEZONE",
        ]
        return lines
    for instant in transitions:
        before = (instant - timedelta(minutes=1)).astimezone(zone)
        after = instant.astimezone(zone)
        kind = "DAYLIGHT" if after.dst() else "STANDARD"
        wall = (instant + (before.utcoffset() or timedelta(0))).replace(tzinfo=None)
        rrule, start = _rule(wall)
        lines += [
            f"BEGIN:{kind}",
            f"DTSTART:{start:%Y%m%dT%H%M%S}",
            f"RRULE:{rrule}",
            f"TZOFFSETFROM:{_offset(before.utcoffset())}",
            f"TZOFFSETTO:{_offset(after.utcoffset())}",
            f"TZNAME:{after.tzname()}",
            f"END:{kind}",
        ]
    lines.append("END:VTIMEZONE")
    return lines
