"""The corpus of client-written calendar objects (``tests/corpus/clients/``), filled in for one
event calbridge wrote.

Each ``.ics`` file there is what one calendar app writes back when a person edits an event it
synced from calbridge's calendar; ``README.md`` beside them says which app, where that is
documented, and what calbridge does with it. The files are templates: placeholders stand for
what calbridge's own copy of the event said, and for the times the person gave it.

``{{UID}}``, ``{{SUMMARY}}``, ``{{DESCRIPTION}}``, ``{{LOCATION}}``, ``{{KIND}}``
    the value calbridge wrote, as it wrote it (already escaped for iCalendar).
``{{LINE:URL}}``
    calbridge's whole ``URL`` line (apps keep it), or no line when it wrote none.
``{{START:ZONE}}``, ``{{END:ZONE}}``
    the person's start or end, written as the app writes it: ``UTC`` gives ``…Z``, a zone name
    gives local time in that zone (the file's own TZID parameter may name it differently, as
    Outlook's Windows names do), ``DATE`` gives the day in UTC and ``NEXT-DATE`` the day after
    (an all-day event's exclusive end).
``{{START+P7D:UTC}}``, ``{{END+P7DT1H:UTC}}``, ``{{START-PT10M:UTC}}``
    the same, shifted by a duration (a recurrence's second week, an alarm's snooze time).

The files are bytes, kept as the app writes them (CRLF or LF, folded lines, and in one case
bytes that are not UTF-8), so the filled object is bytes too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar

CLIENTS = Path(__file__).resolve().parent.parent / "corpus" / "clients"
PLACEHOLDER = re.compile(
    rb"\{\{([A-Z]+)(?:([+-])P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?)?(?::([^}]+))?\}\}"
)


@dataclass(frozen=True)
class ClientFile:
    """One row of the corpus README: a file, who writes it, and what calbridge does with it."""

    name: str
    client: str
    edit: str  # move | additions | all-day | recurrence | malformed | not-utf-8
    outcome: str
    source: str

    def fill(
        self, ours: str, *, start: datetime | None = None, end: datetime | None = None
    ) -> bytes:
        """This file, as the app writes it for the event calbridge wrote as ``ours``."""
        return client_edit(self.name, ours, start=start, end=end)

    def text(self, ours: str, *, start: datetime | None = None, end: datetime | None = None) -> str:
        """:meth:`fill` as text, for the pure layers (which read what a server decoded)."""
        return self.fill(ours, start=start, end=end).decode()


def catalogue() -> dict[str, ClientFile]:
    """The README's table, by file name."""
    rows: dict[str, ClientFile] = {}
    for line in (CLIENTS / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`") and cells[0].endswith(".ics`"):
            name = cells[0].strip("`")
            rows[name] = ClientFile(name, cells[1], cells[2], cells[3], cells[4])
    return rows


def _lines(ics: str) -> dict[str, str]:
    """Property name → raw line (after unfolding) of the first VEVENT, as calbridge wrote it."""
    unfolded = re.sub(r"\r?\n[ \t]", "", ics)
    inside, out = False, {}
    for line in unfolded.splitlines():
        if line == "BEGIN:VEVENT":
            inside = True
        elif line == "END:VEVENT":
            break
        elif inside and ":" in line:
            out.setdefault(re.split(r"[;:]", line, maxsplit=1)[0], line)
    return out


def _when(value: datetime, zone: str) -> str:
    if zone == "UTC":
        return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    if zone == "DATE":
        return value.astimezone(UTC).strftime("%Y%m%d")
    if zone == "NEXT-DATE":
        return (value.astimezone(UTC) + timedelta(days=1)).strftime("%Y%m%d")
    return value.astimezone(ZoneInfo(zone)).strftime("%Y%m%dT%H%M%S")


def client_edit(
    name: str, ours: str, *, start: datetime | None = None, end: datetime | None = None
) -> bytes:
    """``name`` (a corpus file) filled in for the event calbridge wrote as ``ours``: its UID and
    text, and the times the person gave it (``start``/``end``; by default calbridge's own)."""
    props = _lines(ours)
    event = icalendar.Calendar.from_ical(ours).walk("VEVENT")[0]
    begin = start or event["DTSTART"].dt
    finish = end or (begin + (event["DTEND"].dt - event["DTSTART"].dt))
    names = {"KIND": "X-CALBRIDGE-KIND"}
    values = {
        key: props.get(names.get(key, key), ":").split(":", 1)[1]
        for key in ("UID", "SUMMARY", "DESCRIPTION", "LOCATION", "KIND")
    }
    template = (CLIENTS / name).read_bytes()
    for prop in re.findall(rb"\{\{LINE:([A-Z-]+)\}\}", template):  # a whole line, if we wrote one
        line = props.get(prop.decode())
        template = re.sub(
            rb"\{\{LINE:" + prop + rb"\}\}(\r?\n)",
            (lambda m, line=line: line.encode() + m.group(1)) if line else b"",
            template,
        )

    def fill(match: re.Match[bytes]) -> bytes:
        key, sign, days, hours, minutes, zone = (
            g.decode() if g is not None else None for g in match.groups()
        )
        if key in values:
            return values[key].encode()
        if key not in ("START", "END") or zone is None:
            raise KeyError(f"{name}: unknown placeholder {match.group(0).decode()}")
        shift = timedelta(days=int(days or 0), hours=int(hours or 0), minutes=int(minutes or 0))
        when = begin if key == "START" else finish
        return _when(when - shift if sign == "-" else when + shift, zone).encode()

    return PLACEHOLDER.sub(fill, template)
