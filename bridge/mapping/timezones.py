"""VTIMEZONE components Outlook reads correctly: RRULE-based, built from zoneinfo.

icalendar generates VTIMEZONEs as lists of RDATEs, which Outlook mishandles (one-hour shifts,
the wrong zone name; calendar-clients.md §1.6). This builds the compact 1970-anchored form with
one yearly RRULE per observance, taken from the zone's transitions in the first year of the
window — and then checks it: every transition the rules imply in every year of the window
must be a real one, and every real one implied. Zones whose changes follow no weekday rule
(Africa/Casablanca, tied to Ramadan) or that change their rules inside the window (Mexico
abolishing DST) get the explicit form instead: one observance per real transition, each with
its own DTSTART repeated as its one RDATE — parsers built on dateutil's rruleset (``ical``)
ignore an onset given by DTSTART alone. (icalendar 7.3's ``Timezone.from_tzid`` was tried for
the explicit form; it leaves out several of Casablanca's transitions, 2027's among them.)
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
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


@dataclass(frozen=True)
class _Observance:
    """One zone change: its UTC instant and the offsets around it."""

    instant: datetime
    before: timedelta
    after: timedelta
    daylight: bool
    name: str


def _observed(zone: ZoneInfo, instant: datetime) -> _Observance:
    before = (instant - timedelta(minutes=1)).astimezone(zone)
    after = instant.astimezone(zone)
    offset_before, offset_after = (
        before.utcoffset() or timedelta(0),
        after.utcoffset() or timedelta(0),
    )
    # DAYLIGHT when the clocks go forward. zoneinfo's own dst() is negative in zones written
    # with "negative DST" (Casablanca in Ramadan, Dublin in winter), and parsers that expect
    # DAYLIGHT to be the larger offset (icalendar, dateutil) misplace such a change by an hour.
    return _Observance(
        instant, offset_before, offset_after, offset_after > offset_before, after.tzname() or ""
    )


def _implied(rule: tuple[int, int, int, int, int], offset_from: timedelta, year: int) -> datetime:
    """The UTC instant of "the nth (or last) weekday of the month at h:m" in ``year``."""
    month, nth, weekday, hour, minute = rule
    days = [
        d
        for d in range(1, calendar.monthrange(year, month)[1] + 1)
        if calendar.weekday(year, month, d) == weekday
    ]
    wall = datetime(year, month, days[nth if nth == -1 else nth - 1], hour, minute)
    return (wall - offset_from).replace(tzinfo=UTC)


def vtimezone_lines(tzid: str, first_year: int, last_year: int | None = None) -> list[str]:
    """The VTIMEZONE of ``tzid``, right for every instant from ``first_year`` through
    ``last_year`` (default: ``first_year``), as unfolded content lines."""
    return list(_vtimezone(tzid, first_year, max(first_year, last_year or first_year)))


@lru_cache(maxsize=256)
def _vtimezone(tzid: str, first: int, last: int) -> tuple[str, ...]:
    zone = ZoneInfo(tzid)
    real = [_observed(zone, t) for year in range(first, last + 1) for t in _transitions(zone, year)]
    reference = [o for o in real if o.instant.year == first]
    lines = ["BEGIN:VTIMEZONE", f"TZID:{tzid}"]
    if not real:  # no change anywhere in the window: one fixed observance
        now = datetime(first, 7, 1, tzinfo=UTC).astimezone(zone)
        off = _offset(now.utcoffset())
        return (
            *lines,
            "BEGIN:STANDARD",
            "DTSTART:19700101T000000",
            f"TZOFFSETFROM:{off}",
            f"TZOFFSETTO:{off}",
            f"TZNAME:{now.tzname()}",
            "END:STANDARD",
            "END:VTIMEZONE",
        )
    if len(reference) == 2:
        compact = _compact(reference, real, first, last)
        if compact is not None:
            return (*lines, *compact, "END:VTIMEZONE")
    return (*lines, *_explicit(zone, real, first), "END:VTIMEZONE")


def _compact(
    reference: list[_Observance], real: list[_Observance], first: int, last: int
) -> list[str] | None:
    """Two yearly RRULE observances from the reference year, or None when they would not
    reproduce exactly the real transitions (instants and offsets) of every year."""
    lines: list[str] = []
    implied = []
    for change in reference:
        wall = (change.instant + change.before).replace(tzinfo=None)
        rrule, start = _rule(wall)
        days_in_month = calendar.monthrange(wall.year, wall.month)[1]
        nth = -1 if wall.day + 7 > days_in_month else (wall.day - 1) // 7 + 1
        rule = (wall.month, nth, wall.weekday(), wall.hour, wall.minute)
        implied += [
            (_implied(rule, change.before, year), change.before, change.after)
            for year in range(first, last + 1)
        ]
        kind = "DAYLIGHT" if change.daylight else "STANDARD"
        lines += [
            f"BEGIN:{kind}",
            f"DTSTART:{start:%Y%m%dT%H%M%S}",
            f"RRULE:{rrule}",
            f"TZOFFSETFROM:{_offset(change.before)}",
            f"TZOFFSETTO:{_offset(change.after)}",
            f"TZNAME:{change.name}",
            f"END:{kind}",
        ]
    actual = sorted((o.instant, o.before, o.after) for o in real)
    return lines if sorted(implied) == actual else None


def _explicit(zone: ZoneInfo, real: list[_Observance], first: int) -> list[str]:
    """The offset in force on 1 January of ``first``, then one observance per transition."""
    opening = datetime(first, 1, 1, tzinfo=UTC).astimezone(zone)
    off = _offset(opening.utcoffset())
    lines = [
        "BEGIN:STANDARD",
        f"DTSTART:{first:04d}0101T000000",
        f"RDATE:{first:04d}0101T000000",
        f"TZOFFSETFROM:{off}",
        f"TZOFFSETTO:{off}",
        f"TZNAME:{opening.tzname()}",
        "END:STANDARD",
    ]
    for change in real:
        kind = "DAYLIGHT" if change.daylight else "STANDARD"
        wall = (change.instant + change.before).replace(tzinfo=None)
        lines += [
            f"BEGIN:{kind}",
            f"DTSTART:{wall:%Y%m%dT%H%M%S}",
            f"RDATE:{wall:%Y%m%dT%H%M%S}",
            f"TZOFFSETFROM:{_offset(change.before)}",
            f"TZOFFSETTO:{_offset(change.after)}",
            f"TZNAME:{change.name}",
            f"END:{kind}",
        ]
    return lines
