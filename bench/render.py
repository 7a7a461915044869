"""Rendering speed: a full render of a 10,000-event feed, then a re-render with one changed
event (using the render cache), printed as a fraction of the full render (goal: under 5%).

The snapshot is synthetic: 2,000 appointment groups with 5 reservations each, sent as Canvas
sends a list: JSON pages of 100 groups (20 pages). Each snapshot is validated by the real
poller code (``FetchedPoll.snapshot`` over ``RawList`` pages, as ``bridge/daemon/cycle.py``
does; no HTTP), so the "changed" snapshot is built the way the daemon builds it:

* **daemon path**: validated with the account's ``ParsedPages`` from the base poll, so the 19
  pages whose bytes did not change hand back the very same group objects and only the changed
  page's 100 groups are new objects (the render cache tells the others by identity);
* **from scratch**: validated without it, every group a new (equal-valued) object, so the
  render cache compares every group's key. Printed too, so both figures are visible.

Median of a few runs of CPU time (``time.process_time``, after ``gc.collect()``: a collection
started by the previous run is not charged to the next); each re-render follows a full render
into a fresh cache. The poller's validation of the changed poll (with and without the kept
pages) is timed and printed as well, so what the reuse costs or saves there is visible, and
so is the memory the kept pages hold (tracemalloc: the parsed groups ``ParsedPages`` keeps
alive once the snapshot is dropped) beside the render cache's own for the same feed.
Before dividing, every render must hold the same events (the same UIDs, one of them changed),
both re-renders must equal a render of the same snapshot from an empty cache byte for byte,
and the daemon path's snapshot must share exactly the unchanged pages' groups.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.canvas.client import RawList
from bridge.canvas.poller import FetchedPoll, ParsedPages
from bridge.config import FeedConfig
from bridge.mapping import RenderCache, RenderedFeed, render_feed
from bridge.mapping.feed import FeedOptions
from bridge.mapping.text import html_to_text
from bridge.model.canvas import AccountSnapshot, AppointmentGroup, Profile

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
HOST = "canvas.example.edu"
GROUPS, PER_GROUP, PER_PAGE, RUNS = 2000, 5, 100, 5
CHANGED = 0  # the group whose first slot moves (on the first page)


def _time(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def pages(changed: bool = False) -> tuple[bytes, ...]:
    """The reservable groups as Canvas would send them, page by page."""
    groups: list[dict[str, Any]] = []
    for g in range(GROUPS):
        slots, reserved = [], []
        for s in range(PER_GROUP):
            start = NOW + timedelta(days=(g * PER_GROUP + s) % 300, hours=s)
            if changed and g == CHANGED and s == 0:
                start += timedelta(minutes=30)
            sid, end = g * 100 + s, start + timedelta(minutes=20)
            slots.append(
                {"id": sid, "start_at": _time(start), "end_at": _time(end), "reserved": True,
                 "appointment_group_id": g}
            )  # fmt: skip
            reserved.append(
                {"id": 10_000_000 + sid, "start_at": _time(start), "end_at": _time(end)}
            )
        groups.append(
            {
                "id": g,
                "title": f"Office hours {g}",
                "description": f"<p>Group <b>{g}</b>, bring questions.</p>",
                "location_name": "Room 101",
                "location_address": "Science Hall",
                "appointments": slots,
                "reserved_times": reserved,
                "html_url": f"https://{HOST}/appointment_groups/{g}",
            }
        )
    return tuple(json.dumps(groups[i : i + PER_PAGE]).encode() for i in range(0, GROUPS, PER_PAGE))


def fetched(raw_pages: tuple[bytes, ...]) -> FetchedPoll:
    kinds = ("application/json",) * len(raw_pages)
    reservable = RawList(AppointmentGroup, "/api/v1/appointment_groups", None, raw_pages, kinds)
    return FetchedPoll(Profile(id=1, name="Bench"), (), reservable, None)


def timed(work: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    gc.collect()
    started = time.process_time()
    result = work(*args)
    return result, time.process_time() - started


def main() -> None:
    options = replace(
        FeedConfig(id="bench", account="bench", include=["reservations"]).options({}),
        max_bytes=10**9,
    )
    base_pages, changed_pages = pages(), pages(changed=True)
    later = NOW + timedelta(hours=1)
    full_times: list[float] = []
    again: dict[str, list[float]] = {"daemon path": [], "from scratch": []}
    validate: dict[str, list[float]] = {"daemon path": [], "from scratch": []}
    renders: dict[str, RenderedFeed] = {}
    snaps: dict[str, tuple[AccountSnapshot, AccountSnapshot]] = {}  # base, changed
    first: RenderedFeed | None = None
    for _ in range(RUNS):
        for path in again:
            kept = ParsedPages()
            base = fetched(base_pages).snapshot(HOST, kept)
            cache = RenderCache()
            html_to_text.cache_clear()  # a cold start: nothing parsed before
            first, took = timed(render_feed, base, options, {}, NOW, cache)
            full_times.append(took)
            last = kept if path == "daemon path" else None
            snap, took = timed(fetched(changed_pages).snapshot, HOST, last)
            validate[path].append(took)
            second, took = timed(render_feed, snap, options, first.versions, later, cache)
            again[path].append(took)
            renders[path], snaps[path] = second, (base, snap)
    assert first is not None
    check(first, renders, snaps, options, later)
    full = statistics.median(full_times)
    bumped = sum(1 for v in renders["daemon path"].versions.values() if v.sequence > 0)
    print(
        f"events: {len(first.events)}   feed size: {len(first.ics) / 1e6:.2f} MB   "
        f"events changed: {bumped}   pages: {len(base_pages)} of {PER_PAGE} groups"
    )
    print(
        f"full render:       {full * 1000:7.1f} ms CPU ({len(first.events) / full:,.0f} events/s)"
    )
    for path, times in again.items():
        median = statistics.median(times)
        print(
            f"re-render (1 chg), {path:12}: {median * 1000:6.1f} ms CPU = {median / full:.1%} "
            f"of the full render (goal < 5%); the poller's validation of that poll: "
            f"{statistics.median(validate[path]) * 1000:.1f} ms"
        )
    pages_held = held(lambda: kept_pages(base_pages))
    snap = fetched(base_pages).snapshot(HOST)
    cache_held = held(lambda: render_cache(snap, options))
    print(
        f"memory: the kept pages (ParsedPages, {GROUPS} groups) {pages_held / 2**20:.1f} MB; "
        f"the render cache of the same feed {cache_held / 2**20:.1f} MB (tracemalloc)"
    )


def held(build: Callable[[], Any]) -> int:
    """Bytes still allocated once ``build``'s result (what it keeps) is all that is left."""
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    size = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    del kept
    return size


def kept_pages(raw_pages: tuple[bytes, ...]) -> ParsedPages:
    kept = ParsedPages()
    fetched(raw_pages).snapshot(HOST, kept)  # the snapshot is dropped, the pages kept
    return kept


def render_cache(snap: AccountSnapshot, options: FeedOptions) -> RenderCache:
    cache = RenderCache()
    render_feed(snap, options, {}, NOW, cache)  # the render is dropped, the cache kept
    return cache


def check(
    first: RenderedFeed,
    renders: dict[str, RenderedFeed],
    snaps: dict[str, tuple[AccountSnapshot, AccountSnapshot]],
    options: FeedOptions,
    later: datetime,
) -> None:
    """Stop unless every render did the work the figures claim."""
    shared = {
        path: sum(a is b for a, b in zip(base.reservable, snap.reservable, strict=True))
        for path, (base, snap) in snaps.items()
    }
    if shared != {"daemon path": GROUPS - PER_PAGE, "from scratch": 0}:
        raise SystemExit(f"groups shared with the base poll: {shared}")
    for path, second in renders.items():
        # The cached re-render must have done the same work as a cold one: same events, bytes.
        cold = render_feed(snaps[path][1], options, first.versions, later, RenderCache())
        if second.ics != cold.ics:
            raise SystemExit(f"{path}: the cached re-render differs from a cold render")
        bumped = sum(1 for v in second.versions.values() if v.sequence > 0)
        same = sorted(e.uid for e in first.events) == sorted(e.uid for e in second.events)
        if not same or len(first.events) != GROUPS * PER_GROUP or bumped != 1:
            raise SystemExit(
                f"{path}: the renders did not do the same work: {len(first.events)} and "
                f"{len(second.events)} events (expected {GROUPS * PER_GROUP}, the same UIDs: "
                f"{same}), {bumped} changed (expected 1)"
            )
    if renders["daemon path"].ics != renders["from scratch"].ics:
        raise SystemExit("the two re-renders differ")


if __name__ == "__main__":
    main()
