"""Memory per account: what the render caches and rendered feeds of N accounts hold.

``python bench/memory.py [N]`` (default 10000). Each account is shaped like a user of
``bench/cycle.py``: a feed of conferences and reservations from 10 appointment groups (4 slots
each, 2 of them the user's) and 5 conferences, so 25 events. As in the daemon, each account's
feed keeps its own ``RenderCache`` and the last render's body and versions; each is rendered
twice (from an empty cache, then unchanged an hour later, as the daemon's second cycle does).

Printed: the peak RSS over the process's start per account and for the N accounts, against the
target of 300 MB at 10,000 accounts (each snapshot is dropped once rendered: the daemon keeps
the cache and the last render, not the parsed snapshot); then, for
min(N, 2,000) accounts under tracemalloc, the bytes each account's cache and last render hold
(snapshots excluded), and what is left once the render's result is dropped (the cache; it
shares the body with the last render, which the feed server holds anyway). Before printing it
checks that every feed holds its 25 events and that the second render equals the first.

There is no "before" in the same run: run it on another checkout (``PYTHONPATH=<checkout>``)
to compare.
"""

from __future__ import annotations

import gc
import resource
import sys
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.config import FeedConfig
from bridge.mapping import RenderCache, RenderedFeed, render_feed
from bridge.model.canvas import AccountSnapshot

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
GROUPS, SLOTS, OWN, CONFERENCES = 10, 4, 2, 5
EVENTS = GROUPS * OWN + CONFERENCES
TRACED = 2000


def snapshot(account: int) -> AccountSnapshot:
    groups: list[dict[str, Any]] = []
    for g in range(GROUPS):
        gid = account * 100 + g
        slots, reserved = [], []
        for s in range(SLOTS):
            start = NOW + timedelta(days=(account + g * SLOTS + s) % 90, hours=9 + s)
            sid = gid * 10 + s
            mine = s < OWN
            slots.append(
                {"id": sid, "start_at": start, "end_at": start + timedelta(minutes=20),
                 "reserved": mine, "appointment_group_id": gid}
            )  # fmt: skip
            if mine:
                end = start + timedelta(minutes=20)
                reserved.append({"id": 10_000_000 + sid, "start_at": start, "end_at": end})
        groups.append(
            {
                "id": gid,
                "title": f"Office hours {g}",
                "description": f"<p>Course {account % 50}, group <b>{g}</b>.</p>",
                "location_name": "Room 101",
                "appointments": slots,
                "reserved_times": reserved,
                "html_url": f"https://canvas.example.edu/appointment_groups/{gid}",
            }
        )
    conferences = [
        {
            "id": account * 10 + c,
            "title": f"Lecture {c}",
            "conference_type": "BigBlueButton",
            "start_at": NOW + timedelta(days=c * 7, hours=10),
            "end_at": NOW + timedelta(days=c * 7, hours=11),
            "url": f"https://canvas.example.edu/conferences/{account * 10 + c}",
        }
        for c in range(CONFERENCES)
    ]
    return AccountSnapshot.model_validate(
        {
            "canvas_host": "canvas.example.edu",
            "fetched_at": NOW,
            "user": {"id": account, "name": f"Student {account}"},
            "reservable": groups,
            "conferences": conferences,
        }
    )


def render_twice(snap: AccountSnapshot, cache: RenderCache) -> RenderedFeed:
    options = replace(
        FeedConfig(id="f", account="a", include=["conferences", "reservations"]).options({}),
        max_bytes=10**9,
    )
    first = render_feed(snap, options, {}, NOW, cache)
    second = render_feed(snap, options, first.versions, NOW + timedelta(hours=1), cache)
    if len(second.events) != EVENTS or second.ics != first.ics:
        raise SystemExit(
            f"account {snap.user.id}: {len(second.events)} events (expected {EVENTS}), "
            f"second render {'equal' if second.ics == first.ics else 'different'}"
        )
    return second


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    render_twice(snapshot(0), RenderCache())  # imports and first-use caches out of the figure
    gc.collect()
    start = peak_rss()
    kept = []
    for account in range(n):
        cache = RenderCache()
        kept.append((cache, render_twice(snapshot(account), cache)))
    gc.collect()
    grown = peak_rss() - start
    print(
        f"{n} accounts, {EVENTS} events each: peak RSS grew {grown / 2**20:.1f} MB "
        f"= {grown / n / 1024:.1f} KiB per account"
    )
    if n < 10_000:
        print(f"  at 10,000 accounts: ~{grown / n * 10_000 / 2**20:.0f} MB (target < 300 MB)")
    else:
        print(
            f"  target < 300 MB at 10,000 accounts: {'met' if grown < 300 * 2**20 else 'NOT met'}"
        )
    del kept
    gc.collect()

    traced = min(n, TRACED)
    snaps = [snapshot(account) for account in range(traced)]
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    caches, feeds = [], []
    for snap in snaps:
        cache = RenderCache()
        caches.append(cache)
        feeds.append(render_twice(snap, cache))
    gc.collect()
    after = tracemalloc.take_snapshot()
    total = sum(s.size_diff for s in after.compare_to(base, "filename"))
    feeds.clear()  # what is left: the caches alone
    gc.collect()
    caches_only = tracemalloc.take_snapshot()
    cache_bytes = sum(s.size_diff for s in caches_only.compare_to(base, "filename"))
    tracemalloc.stop()
    print(
        f"{traced} accounts under tracemalloc: {total / traced / 1024:.1f} KiB per account "
        f"(the cache alone: {cache_bytes / traced / 1024:.1f} KiB)"
    )


if __name__ == "__main__":
    main()
