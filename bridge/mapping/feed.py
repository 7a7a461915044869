"""A whole feed: which events (include kinds, time window, size cap) and the ICS bytes.

``collect_events`` is the pure mapping of one account's snapshot to events; ``render_feed``
adds versions and writes the calendar; ``render_event_ics`` writes one event as a calendar of
its own for CalDAV. Nothing here reads the clock or does I/O: ``now`` and the previous versions
are parameters, the caller stores the new versions.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from bridge.mapping import ics_writer
from bridge.mapping.bookings import (
    managed_key,
    managed_slot_events,
    open_slot_events,
    reservation_events,
    reservation_key,
)
from bridge.mapping.conferences import NoTime, conference_event
from bridge.mapping.text import fold
from bridge.mapping.timezones import vtimezone_lines
from bridge.mapping.versions import EventVersion, next_versions
from bridge.model.canvas import AccountSnapshot, AppointmentGroup
from bridge.model.event import CalEvent


@dataclass(frozen=True)
class FeedOptions:
    """What goes into a feed (or a CalDAV calendar) and how it is written. Built by the
    configuration (``FeedConfig.options``, ``CalDAVConfig.event_options``), which holds the
    defaults and checks the values."""

    name: str
    description: str | None
    include: frozenset[str]  # conferences, reservations, open_slots, managed_slots
    timezone: str | None  # None: UTC
    window_past: timedelta
    window_future: timedelta
    color: str | None
    default_alarm: timedelta | None
    refresh_interval: timedelta
    max_bytes: int
    reservation_uids: Mapping[int, str]  # rebooked reservation id → the UID its event keeps


class SkipReason(enum.StrEnum):
    """Why an event was left out. The expected ones (outside the window, no time yet) are
    logged at info; a feed cut for size is a warning."""

    OUTSIDE_WINDOW = "outside the feed's time window"
    NO_TIME = "no scheduled or actual time"
    FEED_TOO_LARGE = "feed over its size cap (Google ignores feeds over ~1 MB)"

    @property
    def expected(self) -> bool:
        return self is not SkipReason.FEED_TOO_LARGE


@dataclass(frozen=True)
class SkippedEvent:
    """An event left out of a feed, with why; the daemon logs these."""

    ref: str
    reason: SkipReason
    detail: str = ""


@dataclass(frozen=True)
class CollectResult:
    events: list[CalEvent]
    skipped: list[SkippedEvent]


@dataclass(frozen=True)
class RenderedFeed:
    ics: bytes
    versions: dict[str, EventVersion]
    events: list[CalEvent]
    skipped: list[SkippedEvent]


class RenderCache:
    """Rendered VEVENT bytes by (uid, version, timezone, alarm), and the events mapped from each
    appointment group by what its mapping reads of it: re-renders reuse what did not change."""

    def __init__(self) -> None:
        self._text: dict[tuple[object, ...], bytes] = {}
        self._mapped: dict[tuple[object, ...], list[CalEvent]] = {}
        self._mapped_next: dict[tuple[object, ...], list[CalEvent]] = {}

    def mapped(
        self, key: tuple[object, ...], build: Callable[[], list[CalEvent]]
    ) -> list[CalEvent]:
        """Events of one Canvas object, rebuilt only when what the mapping reads (the key)
        changed."""
        found = self._mapped.get(key)
        if found is None:
            found = build()
        self._mapped_next[key] = found
        return found

    def end_render(self) -> None:
        self._mapped, self._mapped_next = self._mapped_next, {}

    def vevent(
        self,
        event: CalEvent,
        version: EventVersion,
        tzid: str | None,
        alarm: timedelta | None,
        organizer: str,
    ) -> bytes:
        """The event's VEVENT as UTF-8 (encoded once: sizes and the body need no re-encoding)."""
        key = (
            event.uid,
            version.content_hash,
            version.sequence,
            version.dtstamp,
            tzid,
            alarm,
            organizer,
        )
        text = self._text.get(key)
        if text is None:
            text = self._text[key] = ics_writer.vevent(
                event, version, tzid, alarm, organizer
            ).encode()
        return text

    def retain(self, events: list[CalEvent]) -> None:
        """Forget events no longer rendered, so the cache does not grow forever. Swept only
        once it holds twice what is rendered: a sweep walks every entry."""
        if len(self._text) > 2 * len(events) + 64:
            uids = {e.uid for e in events}
            self._text = {k: v for k, v in self._text.items() if k[0] in uids}


def collect_events(
    snapshot: AccountSnapshot, options: FeedOptions, now: datetime, cache: RenderCache | None = None
) -> CollectResult:
    host = snapshot.canvas_host
    aliases = tuple(sorted(options.reservation_uids.items()))

    def once(
        kind: str, group: AppointmentGroup, build: Callable[[], list[CalEvent]]
    ) -> list[CalEvent]:
        if cache is None:
            return build()
        # The key: the fields this kind's mapping reads, nothing else (exact, and a fraction
        # of serialising the whole group).
        key = reservation_key(group) if kind == "reservations" else managed_key(group)
        return cache.mapped((kind, host, aliases, key), build)

    events: list[CalEvent] = []
    skipped: list[SkippedEvent] = []
    if "conferences" in options.include:
        for conf in snapshot.conferences:
            try:
                events.append(conference_event(conf, host, now))
            except NoTime as exc:
                skipped.append(SkippedEvent(f"conference {conf.id}", SkipReason.NO_TIME, str(exc)))
    for group in snapshot.reservable:
        if "reservations" in options.include:
            build = partial(reservation_events, group, host, options.reservation_uids)
            events += once("reservations", group, build)
        if "open_slots" in options.include:
            events += open_slot_events(group, host, now)
    if "managed_slots" in options.include:
        for group in snapshot.manageable:
            events += once("managed", group, partial(managed_slot_events, group, host))
    earliest, latest = now - options.window_past, now + options.window_future
    kept, seen = [], set()
    for event in sorted(events, key=CalEvent.sort_key):
        if event.uid in seen:
            continue
        seen.add(event.uid)
        end = event.end if isinstance(event.end, datetime) else None
        start = event.start if isinstance(event.start, datetime) else None
        if (end is not None and end < earliest) or (start is not None and start > latest):
            skipped.append(SkippedEvent(event.uid, SkipReason.OUTSIDE_WINDOW))
            continue
        kept.append(event)
    return CollectResult(kept, skipped)


def _header(options: FeedOptions, now: datetime) -> str:
    head = ics_writer.calendar_header(
        name=options.name,
        description=options.description,
        refresh=options.refresh_interval,
        color=options.color,
    )
    if options.timezone:
        first, last = (now - options.window_past).year, (now + options.window_future).year
        head += "".join(fold(line) for line in vtimezone_lines(options.timezone, first, last))
    return head


def render_feed(
    snapshot: AccountSnapshot,
    options: FeedOptions,
    previous: Mapping[str, EventVersion],
    now: datetime,
    cache: RenderCache | None = None,
) -> RenderedFeed:
    """The feed's ICS. Over ``max_bytes``, the events farthest in the future are dropped
    first, each reported in ``skipped``."""
    cache = cache or RenderCache()
    collected = collect_events(snapshot, options, now, cache)
    cache.end_render()
    versions = next_versions(collected.events, previous, now)
    texts = [
        cache.vevent(
            e, versions[e.uid], options.timezone, options.default_alarm, snapshot.canvas_host
        )
        for e in collected.events
    ]
    head = _header(options, now).encode()
    footer = ics_writer.FOOTER.encode()
    size = len(head) + len(footer) + sum(map(len, texts))
    events, skipped = list(collected.events), list(collected.skipped)
    while size > options.max_bytes and events:
        dropped = events.pop()
        size -= len(texts.pop())
        skipped.append(
            SkippedEvent(dropped.uid, SkipReason.FEED_TOO_LARGE, f"cap {options.max_bytes} bytes")
        )
        versions.pop(dropped.uid, None)
    cache.retain(events)
    return RenderedFeed(head + b"".join(texts) + footer, versions, events, skipped)


def render_event_ics(
    event: CalEvent,
    version: EventVersion,
    options: FeedOptions | None = None,
    now: datetime | None = None,
) -> str:
    """One event as a complete VCALENDAR: what a CalDAV resource holds. Its VTIMEZONE is
    built for the event's own years (``now`` no longer matters; kept for callers)."""
    tzid = options.timezone if options else None
    head = ics_writer.minimal_header()
    if tzid:  # right for the event's own dates (an irregular zone gets explicit transitions)
        years = (event.start.year, event.end.year)
        head += "".join(fold(line) for line in vtimezone_lines(tzid, min(years), max(years)))
    alarm = options.default_alarm if options else None
    return head + ics_writer.vevent(event, version, tzid, alarm) + ics_writer.FOOTER
