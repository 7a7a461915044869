"""Real parsers as validation gates for every ICS calbridge writes (TESTING.md):
the strict ``ical`` parser, libical (through the system Python's PyGObject) and our own checks
for what both miss (UID/DTSTAMP presence, DTEND after DTSTART, line length)."""

from __future__ import annotations

import subprocess
from datetime import date, datetime

import icalendar
from ical.calendar_stream import IcsCalendarStream

_LIBICAL = r"""
import sys
import gi
gi.require_version("ICalGLib", "3.0")
from gi.repository import ICalGLib
text = sys.stdin.read()
comp = ICalGLib.Component.new_from_string(text)
if comp is None:
    print("unparseable"); sys.exit(0)
comp.check_restrictions()
for line in comp.as_ical_string().splitlines():
    if "X-LIC-ERROR" in line:
        print(line)
"""


def strict_ical(text: str) -> int:
    """Parse with ``ical`` (strict); returns the number of events."""
    return len(IcsCalendarStream.calendar_from_ics(text).events)


def libical_errors(text: str) -> list[str]:
    out = subprocess.run(
        ["/usr/bin/python3", "-c", _LIBICAL],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [line for line in out.stdout.splitlines() if line.strip()]


def own_errors(text: str) -> list[str]:
    problems = []
    for number, line in enumerate(text.split("\r\n"), 1):
        if len(line.encode()) > 75:
            problems.append(f"line {number} longer than 75 octets")
    if "\n" in text.replace("\r\n", ""):
        problems.append("bare LF line ending")
    cal = icalendar.Calendar.from_ical(text)
    for event in cal.walk("VEVENT"):
        uid = str(event.get("UID", ""))
        if not uid:
            problems.append("VEVENT without UID")
        if event.get("DTSTAMP") is None:
            problems.append(f"{uid}: no DTSTAMP")
        start, end = event.get("DTSTART"), event.get("DTEND")
        if start is not None and end is not None:
            s, e = start.dt, end.dt
            if isinstance(s, datetime) != isinstance(e, datetime) or (
                isinstance(s, date) and e <= s
            ):
                problems.append(f"{uid}: DTEND not after DTSTART")
    return problems


def assert_valid(text: str) -> int:
    """Every gate at once; returns the number of events."""
    count = strict_ical(text)
    assert libical_errors(text) == []
    assert own_errors(text) == []
    return count
