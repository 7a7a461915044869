"""A feed's body as blocks, so that a re-render costs what changed, not what the feed holds.

The events of a feed come from *sources* (the conferences; each appointment group's
reservations, open slots or managed slots), each a list of :class:`CalEvent`. Every event
belongs to the block of the week its sort key starts in, so the blocks in key order, each in
sort order, are the feed's events in sort order. A block keeps its VEVENTs as one bytes object
(with the end offset of each), its events, their versions and what it left out of the window.

A render hands over the sources in their order. A source whose list is the one seen last time
(the render cache reuses a group's list while nothing its mapping reads changed) or an equal
one costs a dictionary lookup; a changed one takes its old events out of their blocks and puts
the new ones in, marking those blocks. Only marked blocks are built again, plus the blocks the
window cuts through (its edges move with ``now``) and those whose side of the window changed;
the rest are reused as they are, so long as the versions handed in are the ones the last render
returned (otherwise every block is built again: versions decide SEQUENCE and DTSTAMP).

What a from-scratch render does, the blocks do too: an event whose UID comes earlier in sort
order (ties: the earlier source, then the earlier place in it) hides the others with its UID,
even when it is outside the window; events outside the window are reported in sort order.
``tests/mapping/test_incremental_render.py`` checks after random changes that the body equals
a render from an empty cache byte for byte.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import accumulate

from bridge.mapping.skips import SkippedEvent, SkipReason
from bridge.mapping.versions import next_versions
from bridge.model.event import CalEvent, EventVersion

SourceId = tuple[object, ...]
Body = bytes | memoryview  # a block's VEVENTs: its own bytes, or its part of the last body
Entry = tuple[CalEvent, SourceId, int]  # an event, its source, its place in the source
WriteEvent = Callable[[CalEvent, EventVersion], bytes]

BLOCK = timedelta(days=7)
_EPOCH = datetime(1970, 1, 5, tzinfo=UTC)  # a Monday: blocks are weeks from Monday, UTC
_FAR_PAST = datetime.min.replace(tzinfo=UTC)
_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)

INSIDE, OUTSIDE, CUT = 0, 1, 2  # where a block stands against the window


def block_of(event: CalEvent) -> int:
    return (event.sort_key()[0] - _EPOCH) // BLOCK


def _entry_order(entry: Entry) -> tuple[datetime, str]:
    return entry[0].sort_key()


class Built:
    """One block as rendered: its VEVENTs (once the feed's body is joined, a view of that body,
    not a copy) and the end offset of each, the events kept (in sort order), their versions,
    the events outside the window, and the bounds of its events' times (all-day events count
    as inside any window)."""

    __slots__ = ("body", "bounds", "ends", "kept", "side", "skipped", "versions")

    def __init__(
        self,
        body: Body,
        ends: array[int],
        kept: list[CalEvent],
        versions: dict[str, EventVersion],
        skipped: list[SkippedEvent],
        bounds: tuple[datetime, datetime, datetime, datetime],
        side: int,
    ) -> None:
        self.body, self.ends, self.kept, self.versions = body, ends, kept, versions
        self.skipped, self.bounds, self.side = skipped, bounds, side


class _Block:
    __slots__ = ("built", "dirty", "members")

    def __init__(self) -> None:
        self.members: list[Entry] = []
        self.built: Built | None = None
        self.dirty = True


def _side(bounds: tuple[datetime, datetime, datetime, datetime], lo: datetime, hi: datetime) -> int:
    min_start, max_start, min_end, max_end = bounds
    if min_end >= lo and max_start <= hi:
        return INSIDE
    if max_end < lo or min_start > hi:
        return OUTSIDE
    return CUT


class FeedBlocks:
    """The blocks of one feed, for one set of options and one Canvas host."""

    def __init__(self, key: tuple[object, ...]) -> None:
        self.key = key
        self._sources: dict[SourceId, list[CalEvent]] = {}
        self._blocks: dict[int, _Block] = {}
        self._order: list[int] = []  # block keys, ascending
        self._first: dict[str, Entry] = {}  # uid → an entry with that uid
        self._more: dict[str, list[Entry]] = {}  # uid → the other entries, for shared UIDs
        self._winners: dict[str, Entry] = {}  # shared uid → the entry the feed shows
        self._returned: dict[str, EventVersion] | None = None  # a copy of the last versions
        self._joined: tuple[bytes, list[Built], bytes] | None = None  # the last body, its parts

    # -- sources in, blocks marked ----------------------------------------------------------

    def update(self, sources: Sequence[tuple[SourceId, list[CalEvent]]]) -> None:
        """Take this render's sources (in collection order) and mark the blocks they change.
        Runs for every source on every render: a source seen last time costs a lookup."""
        known = self._sources
        for sid, events in sources:
            old = known.get(sid)
            if old is events:
                continue
            if old is None or old != events:
                if old is not None:
                    self._remove(sid, old)
                self._add(sid, events)
            known[sid] = events
        if len(known) > len(sources):  # some are gone
            live = {sid for sid, _ in sources}
            for sid in [sid for sid in known if sid not in live]:
                self._remove(sid, known.pop(sid))
        if self._more or self._winners:
            self._settle_winners({sid: i for i, (sid, _) in enumerate(sources)})

    def _mark(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            block = self._blocks.get(block_of(entry[0]))
            if block is not None:
                block.dirty = True

    def _add(self, sid: SourceId, events: list[CalEvent]) -> None:
        blocks, first, more = self._blocks, self._first, self._more
        for index, event in enumerate(events):
            entry = (event, sid, index)
            key = block_of(event)
            block = blocks.get(key)
            if block is None:
                block = blocks[key] = _Block()
                bisect.insort(self._order, key)
            block.members.append(entry)
            block.dirty = True
            found = first.get(event.uid)
            if found is None:
                first[event.uid] = entry
            else:  # a shared UID: whichever shows, the blocks of all of them are built again
                others = more.setdefault(event.uid, [])
                self._mark([found, *others])
                others.append(entry)

    def _remove(self, sid: SourceId, events: list[CalEvent]) -> None:
        first, more = self._first, self._more
        keys, done = set(), set()
        for event in events:
            keys.add(block_of(event))
            uid = event.uid
            if uid in done:
                continue
            done.add(uid)
            others = more.get(uid)
            if others is None:
                del first[uid]
                continue
            entries = [first[uid], *others]
            self._mark(entries)
            rest = [e for e in entries if e[1] != sid]
            del more[uid]
            if not rest:
                del first[uid]
            else:
                first[uid] = rest[0]
                if len(rest) > 1:
                    more[uid] = rest[1:]
        for key in keys:
            block = self._blocks[key]
            block.members = [e for e in block.members if e[1] != sid]
            block.dirty = True
            if not block.members:
                del self._blocks[key]
                del self._order[bisect.bisect_left(self._order, key)]

    def _settle_winners(self, positions: Mapping[SourceId, int]) -> None:
        """Which entry shows for each shared UID: the first in sort order, then in collection
        order. Moving a source can change it without any event changing."""
        winners: dict[str, Entry] = {}
        for uid, others in self._more.items():
            winner = min(
                (self._first[uid], *others),
                key=lambda e: (e[0].sort_key(), positions[e[1]], e[2]),
            )
            before = self._winners.get(uid)
            if before is not None and before is not winner:
                self._mark((before, winner))
            winners[uid] = winner
        self._winners = winners

    # -- blocks out ----------------------------------------------------------------------------

    def assemble(
        self,
        previous: Mapping[str, EventVersion],
        now: datetime,
        earliest: datetime,
        latest: datetime,
        write: WriteEvent,
    ) -> list[Built]:
        """Every block, in order, built again where needed."""
        trusted = self._returned is not None and previous == self._returned
        out: list[Built] = []
        for key in self._order:
            block = self._blocks[key]
            built = block.built
            if (
                built is None
                or block.dirty
                or not trusted
                or built.side == CUT
                or _side(built.bounds, earliest, latest) != built.side
            ):
                built = block.built = self._build(block, previous, now, earliest, latest, write)
                block.dirty = False
            out.append(built)
        return out

    def _build(
        self,
        block: _Block,
        previous: Mapping[str, EventVersion],
        now: datetime,
        earliest: datetime,
        latest: datetime,
        write: WriteEvent,
    ) -> Built:
        winners = self._winners
        shown = [e for e in block.members if winners.get(e[0].uid, e) is e]
        shown.sort(key=_entry_order)
        kept: list[CalEvent] = []
        skipped: list[SkippedEvent] = []
        min_start = min_end = _FAR_FUTURE
        max_start = max_end = _FAR_PAST
        for event, _, _ in shown:
            start = event.start if isinstance(event.start, datetime) else None
            end = event.end if isinstance(event.end, datetime) else None
            s_lo, s_hi = (start, start) if start is not None else (_FAR_PAST, _FAR_PAST)
            e_lo, e_hi = (end, end) if end is not None else (_FAR_FUTURE, _FAR_FUTURE)
            min_start, max_start = min(min_start, s_lo), max(max_start, s_hi)
            min_end, max_end = min(min_end, e_lo), max(max_end, e_hi)
            if (end is not None and end < earliest) or (start is not None and start > latest):
                skipped.append(SkippedEvent(event.uid, SkipReason.OUTSIDE_WINDOW))
            else:
                kept.append(event)
        versions = next_versions(kept, previous, now)
        reuse = _texts(block.built)
        texts: list[Body] = []
        for event in kept:
            version = versions[event.uid]
            old = reuse.get(event.uid)
            texts.append(old[1] if old is not None and old[0] == version else write(event, version))
        bounds = (min_start, max_start, min_end, max_end)
        return Built(
            b"".join(texts),
            array("I", accumulate(map(len, texts))),
            kept,
            versions,
            skipped,
            bounds,
            _side(bounds, earliest, latest),
        )

    def returned(self, versions: Mapping[str, EventVersion]) -> None:
        """The versions this render returned: the next render reuses blocks if it is given
        these (a copy is kept, so a caller changing the dict is noticed)."""
        self._returned = dict(versions)

    def joined(self, head: bytes, whole: list[Built], tail: list[Body], footer: bytes) -> bytes:
        """The feed's body: ``head``, the ``whole`` blocks, what the size cap left of the
        others (``tail``), ``footer``. If nothing changed since the last render, the last body
        itself: the feed server holds that object already. Whole blocks then keep views of the
        body instead of bytes of their own, so the body is held once, not twice."""
        last = self._joined
        if not tail and last is not None and last[1] == whole and last[0] == head + footer:
            return last[2]
        ics = b"".join([head, *(b.body for b in whole), *tail, footer])
        view, start = memoryview(ics), len(head)
        for block in whole:
            end = start + len(block.body)
            block.body, start = view[start:end], end
        self._joined = (head + footer, whole, ics) if not tail else None
        return ics

    def rebuild_from(self, index: int) -> None:
        """Build the blocks from ``index`` on again next time (the size cap cut them, and the
        versions of what it dropped were not returned)."""
        for key in self._order[index:]:
            self._blocks[key].dirty = True


def _texts(built: Built | None) -> dict[str, tuple[EventVersion, Body]]:
    """A built block's VEVENT bytes by UID, with the version each was written with."""
    if built is None:
        return {}
    out = {}
    start = 0
    for event, end in zip(built.kept, built.ends, strict=True):
        out[event.uid] = (built.versions[event.uid], built.body[start:end])
        start = end
    return out
