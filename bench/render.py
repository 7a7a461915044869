"""Rendering speed: a full render of a 10,000-event feed, then a re-render with one changed
event (using the render cache), printed as a fraction of the full render (goal: under 5%).

The snapshot is synthetic: 2,000 appointment groups with 5 reservations each. Median of a few
runs of CPU time (``time.process_time``, after ``gc.collect()``: a collection started by the
previous run is not charged to the next); the full render uses a fresh cache each time. Before
dividing, both renders must hold the same events (the same UIDs in the same order, one of them
changed) and the cached re-render must equal a render from an empty cache byte for byte.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bridge.config import FeedConfig
from bridge.mapping import RenderCache, render_feed
from bridge.mapping.text import html_to_text
from bridge.model.canvas import AccountSnapshot

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
GROUPS, PER_GROUP, RUNS = 2000, 5, 5


def snapshot(changed: bool = False) -> AccountSnapshot:
    groups = []
    for g in range(GROUPS):
        slots, reserved = [], []
        for s in range(PER_GROUP):
            start = NOW + timedelta(days=(g * PER_GROUP + s) % 300, hours=s)
            if changed and g == 0 and s == 0:
                start += timedelta(minutes=30)
            sid = g * 100 + s
            slots.append(
                {
                    "id": sid,
                    "start_at": start,
                    "end_at": start + timedelta(minutes=20),
                    "reserved": True,
                    "appointment_group_id": g,
                }
            )
            reserved.append(
                {"id": 10_000_000 + sid, "start_at": start, "end_at": start + timedelta(minutes=20)}
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
                "html_url": f"https://canvas.example.edu/appointment_groups/{g}",
            }
        )
    return AccountSnapshot.model_validate(
        {
            "canvas_host": "canvas.example.edu",
            "fetched_at": NOW,
            "user": {"id": 1, "name": "Bench"},
            "reservable": groups,
        }
    )


def main() -> None:
    options = replace(
        FeedConfig(id="bench", account="bench", include=["reservations"]).options({}),
        max_bytes=10**9,
    )
    base, changed = snapshot(), snapshot(changed=True)
    full_times, rerender_times = [], []
    for _ in range(RUNS):
        cache = RenderCache()
        html_to_text.cache_clear()  # a cold start: nothing parsed before
        gc.collect()
        started = time.process_time()
        first = render_feed(base, options, {}, NOW, cache)
        full_times.append(time.process_time() - started)
        gc.collect()
        started = time.process_time()
        second = render_feed(changed, options, first.versions, NOW + timedelta(hours=1), cache)
        rerender_times.append(time.process_time() - started)
    bumped = sum(1 for uid, v in second.versions.items() if v.sequence > 0)
    # The cached re-render must have done the same work as a cold one: same events, same bytes.
    cold = render_feed(changed, options, first.versions, NOW + timedelta(hours=1), RenderCache())
    if second.ics != cold.ics:
        raise SystemExit("the cached re-render differs from a cold render of the same snapshot")
    same_events = sorted(e.uid for e in first.events) == sorted(e.uid for e in second.events)
    if not same_events or len(first.events) != GROUPS * PER_GROUP or bumped != 1:
        raise SystemExit(
            f"the two renders did not do the same work: {len(first.events)} and "
            f"{len(second.events)} events (expected {GROUPS * PER_GROUP}, the same UIDs: "
            f"{same_events}), {bumped} changed (expected 1)"
        )
    full, again = statistics.median(full_times), statistics.median(rerender_times)
    print(
        f"events: {len(first.events)}   feed size: {len(first.ics) / 1e6:.2f} MB   events changed: {bumped}"
    )
    print(
        f"full render:       {full * 1000:7.1f} ms CPU ({len(first.events) / full:,.0f} events/s)"
    )
    print(
        f"re-render (1 chg): {again * 1000:7.1f} ms CPU = {again / full:.1%} of the full render "
        "(goal < 5%)"
    )


if __name__ == "__main__":
    main()
