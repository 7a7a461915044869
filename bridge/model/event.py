"""The plain description of one calendar event, between Canvas objects and iCalendar text.

The mapping modules build :class:`CalEvent` values from Canvas data; the ICS writer turns them
into text; the CalDAV planner and the write-back rules compare them. ``content_hash`` covers the
meaningful content only, never DTSTAMP, LAST-MODIFIED or SEQUENCE, so a version only moves
when something a person would notice changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal

Kind = Literal["conference", "reservation", "open_slot", "managed_slot"]
Status = Literal["CONFIRMED", "TENTATIVE", "CANCELLED"]


@dataclass(frozen=True, slots=True)
class CalEvent:
    """One event. ``start``/``end`` are aware UTC datetimes (or dates for all-day events);
    ``end`` equal to ``start`` means a zero-length event (rendered without DTEND)."""

    uid: str
    kind: Kind
    summary: str
    start: datetime | date
    end: datetime | date
    description: str = ""
    location: str = ""
    url: str | None = None
    conference_uri: str | None = None
    status: Status = "CONFIRMED"
    transparent: bool = False
    categories: tuple[str, ...] = ()
    # What write-back needs to act on Canvas (ids of the Canvas objects behind the event).
    canvas_id: int = 0
    slot_id: int | None = None
    appointment_group_id: int | None = None
    context_code: str | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())
    # Computed on first use (sort_key, content_hash), not part of the event. Slots, not an
    # instance dict: a feed's cache holds every event, and a dict grown by two keys after
    # construction cost ~770 bytes per event.
    _sort: tuple[datetime, str] | None = field(default=None, init=False, repr=False, compare=False)
    _hash: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def all_day(self) -> bool:
        return not isinstance(self.start, datetime)

    def sort_key(self) -> tuple[datetime, str]:
        """Where the event goes in a feed: by start (a date at midnight UTC), then UID.
        Computed once per event, like :meth:`content_hash`."""
        cached = self._sort
        if cached is None:
            start = self.start
            if not isinstance(start, datetime):
                start = datetime(start.year, start.month, start.day, tzinfo=UTC)
            cached = (start, self.uid)
            object.__setattr__(self, "_sort", cached)
        return cached

    def content_hash(self) -> str:
        """SHA-256 over everything a person would see; stable across runs and processes.
        Computed once per event (events are immutable)."""
        cached = self._hash
        if cached is None:
            cached = self._compute_hash()
            object.__setattr__(self, "_hash", cached)
        return cached

    def _compute_hash(self) -> str:
        parts = [
            self.uid,
            self.kind,
            self.summary,
            self.start.isoformat(),
            self.end.isoformat(),
            self.description,
            self.location,
            self.url or "",
            self.conference_uri or "",
            self.status,
            "T" if self.transparent else "O",
            "\x1f".join(self.categories),
            "\x1f".join(f"{k}={v}" for k, v in self.extra),
        ]
        return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class EventVersion:
    """The version of one event as published: SEQUENCE, DTSTAMP, LAST-MODIFIED, and the content
    hash they belong to (kept between renders; :mod:`bridge.mapping.versions` moves them)."""

    uid: str
    content_hash: str
    sequence: int
    dtstamp: datetime
    last_modified: datetime
