"""A whole feed: which events (include kinds, time window, size cap) and the ICS bytes.

``collect_events`` is the pure mapping of one account's snapshot to events; ``render_feed``
adds versions and writes the calendar; ``render_event_ics`` writes one event as a calendar of
its own for CalDAV. Nothing here reads the clock or does I/O: ``now`` and the previous versions
are parameters, the caller stores the new versions.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bridge.mapping import ics_writer
from bridge.mapping.blocks import Body, Built, FeedBlocks, SourceId
from bridge.mapping.bookings import (
    managed_key,
    managed_slot_events,
    open_slot_events,
    reservation_events,
    reservation_key,
)
from bridge.mapping.conferences import NoTime, conference_event
from bridge.mapping.skips import SkippedEvent, SkipReason
from bridge.mapping.text import fold
from bridge.mapping.timezones import vtimezone_lines
from bridge.mapping.versions import EventVersion
from bridge.model.canvas import AccountSnapshot
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
    """What a feed's next render reuses: the events mapped from each appointment group, by
    what its mapping reads of it, and the feed's blocks (:mod:`bridge.mapping.blocks`), whose
    VEVENTs are kept as bytes, one object per block.

    In a snapshot of at least :data:`TRACK_FROM` groups each group's entry also holds a weak
    reference to the (frozen) group object it was last seen as: when the poller hands back the
    same object for an unchanged page (``bridge.canvas.poller.ParsedPages``), "did this group
    change?" is one identity test, no key is built. The reference is weak so the cache never
    keeps a snapshot alive; below :data:`TRACK_FROM` groups there is none (the poller reuses
    objects only in lists of two pages or more, and 80 bytes a group add up over thousands of
    small accounts)."""

    def __init__(self) -> None:
        self._mapped: dict[SourceId, tuple[Callable[[], Any], object, list[CalEvent]]] = {}
        self._asked = 0
        self._context: tuple[object, ...] = ()
        self._blocks: FeedBlocks | None = None
        self._ref: Callable[[Any], Callable[[], Any]] = _untracked

    def start_render(self, context: tuple[object, ...], groups: int = 0) -> None:
        """Forget every mapped object if what all mappings read besides the object (the Canvas
        host, the rebooked reservations' UIDs) changed. ``groups``: how many the snapshot
        holds (whether to know them by identity)."""
        if context != self._context:
            self._mapped, self._context = {}, context
        self._asked = 0
        self._ref = weakref.ref if groups >= TRACK_FROM else _untracked

    def mapped(
        self,
        sid: SourceId,
        source: Any,
        key_of: Callable[[Any], object],
        build: Callable[..., list[CalEvent]],
        *args: object,
    ) -> list[CalEvent]:
        """Events of one frozen Canvas object ``source`` (``sid``: which, and which kind of
        events), built again (``build(source, *args)``) only when it is not the object seen
        last time and what the mapping reads of it (``key_of(source)``) changed."""
        self._asked += 1
        found = self._mapped.get(sid)
        if found is not None and found[0]() is source:
            return found[2]
        key = key_of(source)
        if found is not None and found[1] == key:
            self._mapped[sid] = (self._ref(source), found[1], found[2])
            return found[2]
        events = build(source, *args)
        self._mapped[sid] = (self._ref(source), key, events)
        return events

    def end_render(self, sources: Iterable[tuple[SourceId, list[CalEvent]]]) -> None:
        """Forget the objects this render did not ask for (swept only when there are some)."""
        if len(self._mapped) > self._asked:
            live = {sid for sid, _ in sources}
            self._mapped = {sid: v for sid, v in self._mapped.items() if sid in live}

    def blocks(self, options: FeedOptions, host: str) -> FeedBlocks:
        """The feed's blocks, started afresh when the options or the host changed (they decide
        every VEVENT's text and the window)."""
        key = (options, host)
        if self._blocks is None or self._blocks.key != key:
            self._blocks = FeedBlocks(key)
        return self._blocks


TRACK_FROM = 100  # groups in a snapshot: a list of one Canvas page (100) never shares objects


def _gone() -> None:
    return None


def _untracked(source: object) -> Callable[[], None]:
    """In place of a weak reference: one that is always dead (no object of its own)."""
    return _gone


@dataclass(frozen=True)
class Sources:
    """A snapshot's events by where they come from, in collection order: the conferences,
    then each reservable group's reservations and open slots, then each managed group's
    slots. A group's list is the cache's own while nothing its mapping reads changed."""

    lists: list[tuple[SourceId, list[CalEvent]]]
    skipped: list[SkippedEvent]  # conferences with no time


def collect_sources(
    snapshot: AccountSnapshot, options: FeedOptions, now: datetime, cache: RenderCache | None = None
) -> Sources:
    host, include, uids = snapshot.canvas_host, options.include, options.reservation_uids
    # A group's events are cached on the group object itself (frozen: the same object, the
    # same events) and then on the fields its mapping reads (its key), nothing else: exact,
    # and a fraction of serialising the whole group. This loop runs for every group on every
    # render, so it is kept lean.
    if cache is not None:
        groups = len(snapshot.reservable) + len(snapshot.manageable)
        cache.start_render((host, tuple(sorted(uids.items()))), groups)
        mapped = cache.mapped
    else:
        mapped = _uncached
    lists: list[tuple[SourceId, list[CalEvent]]] = []
    taken: set[SourceId] = set()

    def source(kind: str, group_id: int) -> SourceId:
        # A group listed twice is two sources (the first in sort order shows, as for any UID).
        sid: SourceId = (kind, group_id, 0)
        occurrence = 0
        while sid in taken:
            occurrence += 1
            sid = (kind, group_id, occurrence)
        taken.add(sid)
        return sid

    skipped: list[SkippedEvent] = []
    if "conferences" in include:
        conferences = []
        for conf in snapshot.conferences:
            try:
                conferences.append(conference_event(conf, host, now))
            except NoTime as exc:
                skipped.append(SkippedEvent(f"conference {conf.id}", SkipReason.NO_TIME, str(exc)))
        lists.append((("conferences",), conferences))
    reservations, open_slots = "reservations" in include, "open_slots" in include
    for group in snapshot.reservable:
        if reservations:
            sid = source("reservations", group.id)
            events = mapped(sid, group, reservation_key, reservation_events, host, uids)
            lists.append((sid, events))
        if open_slots:
            lists.append((source("open_slots", group.id), open_slot_events(group, host, now)))
    if "managed_slots" in include:
        for group in snapshot.manageable:
            sid = source("managed", group.id)
            lists.append((sid, mapped(sid, group, managed_key, managed_slot_events, host)))
    if cache is not None:
        cache.end_render(lists)
    return Sources(lists, skipped)


def _uncached(
    sid: SourceId,
    source: Any,
    key_of: Callable[[Any], object],
    build: Callable[..., list[CalEvent]],
    *args: object,
) -> list[CalEvent]:
    return build(source, *args)


def _window(options: FeedOptions, now: datetime) -> tuple[datetime, datetime]:
    return now - options.window_past, now + options.window_future


def collect_events(
    snapshot: AccountSnapshot, options: FeedOptions, now: datetime, cache: RenderCache | None = None
) -> CollectResult:
    """The events a feed or calendar holds, in sort order: the first of each UID, inside the
    window; the rest reported as skipped."""
    sources = collect_sources(snapshot, options, now, cache)
    events = [e for _, listed in sources.lists for e in listed]
    skipped = list(sources.skipped)
    earliest, latest = _window(options, now)
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
    first, each reported in ``skipped``. With a cache, only the blocks a change reaches are
    written again (:mod:`bridge.mapping.blocks`); the bytes are the same either way."""
    cache = cache or RenderCache()
    sources = collect_sources(snapshot, options, now, cache)
    blocks = cache.blocks(options, snapshot.canvas_host)
    blocks.update(sources.lists)
    tzid, alarm, host = options.timezone, options.default_alarm, snapshot.canvas_host

    def write(event: CalEvent, version: EventVersion) -> bytes:
        return ics_writer.vevent(event, version, tzid, alarm, host).encode()

    built = blocks.assemble(previous, now, *_window(options, now), write)
    head = _header(options, now).encode()
    footer = ics_writer.FOOTER.encode()
    skipped = list(sources.skipped)
    versions: dict[str, EventVersion] = {}
    events: list[CalEvent] = []
    for block in built:
        skipped += block.skipped
        versions.update(block.versions)
        events += block.kept
    size = len(head) + len(footer) + sum(len(b.body) for b in built)
    if size > options.max_bytes and events:
        bodies, whole = _cut(built, size, options.max_bytes, events, versions, skipped)
        blocks.rebuild_from(whole)
        ics = blocks.joined(head, built[:whole], bodies[whole:], footer)
    else:
        ics = blocks.joined(head, built, [], footer)
    blocks.returned(versions)
    return RenderedFeed(ics, versions, events, skipped)


def _cut(
    built: list[Built],
    size: int,
    cap: int,
    events: list[CalEvent],
    versions: dict[str, EventVersion],
    skipped: list[SkippedEvent],
) -> tuple[list[Body], int]:
    """The block bodies that fit under ``cap``, dropping events from the end (farthest in the
    future first), and how many blocks are whole; ``events``, ``versions`` and ``skipped`` are
    updated in place."""
    index, kept = len(built) - 1, len(built[-1].kept)
    while size > cap and events:
        while kept == 0:
            index -= 1
            kept = len(built[index].kept)
        ends = built[index].ends
        size -= ends[kept - 1] - (ends[kept - 2] if kept > 1 else 0)
        kept -= 1
        dropped = events.pop()
        versions.pop(dropped.uid, None)
        skipped.append(SkippedEvent(dropped.uid, SkipReason.FEED_TOO_LARGE, f"cap {cap} bytes"))
    last = built[index]
    bodies = [b.body for b in built[:index]] + [last.body[: last.ends[kept - 1] if kept else 0]]
    return bodies, index


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
