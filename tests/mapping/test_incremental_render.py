"""A re-render with the cache writes the same bytes as a render from nothing, after any change.

The render cache keeps the feed's body in blocks (``bridge/mapping/blocks.py``) and builds
again only the blocks a change reaches. Each test drives one random world through a sequence
of changes — groups added, changed, removed, listed twice, reordered; slots moved in time;
reservations shared by two groups (one UID, two events); conferences spanning weeks; the
window's horizon moving — and after every step requires of the cached render:

* the same bytes, versions, events and skipped events as a render with an empty cache;
* the events and versions of the plain path (``collect_events`` sorts, keeps the first of each
  UID and cuts the window over the whole list; ``next_versions``), unless the size cap cut;
* a body icalendar parses, with one VEVENT per event.

In half the worlds the cached render is given what the daemon's poller gives it
(``bridge.canvas.poller.ParsedPages``): most groups equal to one of the last snapshot's are
that very object again, the others new equal-valued objects, changed groups new objects — the
render from an empty cache is always given new objects (and the cache tracks identity in
those worlds, small as they are: ``TRACK_FROM`` lowered).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar
import pytest

from bridge.mapping import RenderCache, collect_events, feed, next_versions, render_feed
from bridge.mapping.feed import FeedOptions, RenderedFeed
from bridge.model.canvas import AccountSnapshot, AppointmentGroup
from bridge.model.event import EventVersion
from tests.helpers.options import feed_options

START = datetime(2026, 3, 2, 9, tzinfo=UTC)
HOST = "canvas.example.edu"
ALL = ["conferences", "reservations", "open_slots", "managed_slots"]


@dataclass
class World:
    rng: random.Random
    edges: tuple[timedelta, timedelta]  # the window: how far back, how far ahead
    now: datetime = START
    reservable: list[dict[str, Any]] = field(default_factory=list)
    manageable: list[dict[str, Any]] = field(default_factory=list)
    conferences: list[dict[str, Any]] = field(default_factory=list)
    next_id: int = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def when(self) -> datetime:
        """A time near one of the window's edges (where blocks are cut) or near now."""
        rng = self.rng
        anchor = rng.choice([-self.edges[0], timedelta(0), self.edges[1]])
        return self.now + anchor + timedelta(minutes=rng.randrange(-21 * 24 * 60, 21 * 24 * 60, 30))

    def slot(self, start: datetime) -> dict[str, Any]:
        rng = self.rng
        children = [
            {
                "id": self.new_id(),
                "comments": rng.choice(["", "hi", "a\nb"]),
                "user": {"id": 1, "name": "Ada"},
            }
            for _ in range(rng.randrange(0, 3))
        ]
        return {
            "id": self.new_id(),
            "start_at": start,
            "end_at": start + timedelta(minutes=rng.choice([0, 20, 60, 24 * 60])),
            "reserved": rng.random() < 0.5,
            "reserve_comments": rng.choice([None, "bring the draft", "ÄÖÜ " * 30]),
            "available_slots": rng.choice([None, 0, 1, 3]),
            "child_events": children,
            "child_events_count": len(children),
        }

    def group(self) -> dict[str, Any]:
        rng = self.rng
        slots = [self.slot(self.when()) for _ in range(rng.randrange(0, 7))]
        gid = self.new_id()
        return {
            "id": gid,
            "title": f"Office hours {gid}",
            "description": rng.choice(["", "<p>Questions <b>welcome</b></p>", "x" * 300]),
            "location_name": rng.choice([None, "Room 1"]),
            "html_url": f"https://{HOST}/appointment_groups/{gid}",
            "participants_per_appointment": rng.choice([None, 2]),
            "appointments": slots,
            "reserved_times": [
                {"id": self.new_id(), "start_at": s["start_at"], "end_at": s["end_at"]}
                for s in slots
                if s["reserved"]
            ],
        }

    def conference(self) -> dict[str, Any]:
        start = self.when()
        return {
            "id": self.new_id(),
            "title": "Seminar",
            "start_at": start,
            "end_at": start + timedelta(hours=self.rng.choice([1, 24 * 10, 24 * 70])),
            "join_url": "https://meet.example.edu/x",
        }

    def snapshot(self) -> AccountSnapshot:
        return AccountSnapshot.model_validate(
            {
                "canvas_host": HOST,
                "fetched_at": self.now,
                "user": {"id": 1, "name": "Ada"},
                "reservable": self.reservable,
                "manageable": self.manageable,
                "conferences": self.conferences,
            }
        )

    # -- the changes ----------------------------------------------------------------------

    def pick(self) -> list[dict[str, Any]]:
        return self.rng.choice([self.reservable, self.manageable])

    def step(self) -> str:
        rng = self.rng
        op = rng.choice(
            ["add", "add", "change", "remove", "move", "move", "horizon", "horizon", "twice",
             "reorder", "share", "conference", "nothing"]
        )  # fmt: skip
        groups = self.pick()
        if op == "add" or not groups:
            groups.append(self.group())
        elif op == "change":
            group = rng.choice(groups)
            key = rng.choice(["title", "description", "location_name"])
            group[key] = f"{group[key] or ''} changed"
        elif op == "remove":
            groups.remove(rng.choice(groups))
        elif op == "move":  # one slot (and its reservation) to another time
            group = rng.choice(groups)
            if group["appointments"]:
                slot = rng.choice(group["appointments"])
                shift = timedelta(minutes=rng.choice([1, 30, 60 * 24, -60 * 24 * 8, 60 * 24 * 40]))
                for record in [slot, *group["reserved_times"]]:
                    if record["start_at"] == slot["start_at"] and record is not slot:
                        record["start_at"] += shift
                        record["end_at"] += shift
                slot["start_at"] += shift
                slot["end_at"] += shift
        elif op == "horizon":
            self.now += timedelta(
                minutes=rng.choice([5, 60 * 7, 60 * 24, 60 * 24 * 3, 60 * 24 * 9])
            )
        elif op == "twice":  # a group listed twice, in another place: its UIDs twice
            groups.insert(rng.randrange(len(groups) + 1), rng.choice(groups))
        elif op == "reorder":
            rng.shuffle(groups)
        elif op == "share":  # one reservation in two groups, at two times: one UID, two events
            source, target = (
                rng.choice(self.reservable or [{}]),
                rng.choice(self.reservable or [{}]),
            )
            if source.get("reserved_times") and target is not source:
                shared = dict(rng.choice(source["reserved_times"]))
                if rng.random() < 0.5:  # else at the same time: the earlier group's shows
                    shared["start_at"] = self.when()
                    shared["end_at"] = shared["start_at"] + timedelta(minutes=20)
                target["reserved_times"] = [*target["reserved_times"], shared]
        elif op == "conference":
            if self.conferences and rng.random() < 0.4:
                self.conferences.remove(rng.choice(self.conferences))
            else:
                self.conferences.append(self.conference())
        return op


Kept = dict[tuple[str, int], AppointmentGroup]


def shared(snap: AccountSnapshot, last: Kept, rng: random.Random) -> tuple[AccountSnapshot, int]:
    """``snap`` with most groups equal to one of the last snapshot's replaced by that very
    object, as the poller does for a page whose bytes did not change, and how many were;
    ``last`` becomes this snapshot's groups."""
    reused = 0

    def pick(scope: str, groups: list[AppointmentGroup]) -> list[AppointmentGroup]:
        nonlocal reused
        picked = []
        for group in groups:
            old = last.get((scope, group.id))
            if old is not None and old == group and rng.random() < 0.8:
                group, reused = old, reused + 1
            picked.append(group)
        return picked

    reservable, manageable = pick("r", snap.reservable), pick("m", snap.manageable)
    last.clear()
    last.update({("r", g.id): g for g in reservable})
    last.update({("m", g.id): g for g in manageable})
    return snap.model_copy(update={"reservable": reservable, "manageable": manageable}), reused


def check(
    rendered: RenderedFeed,
    fresh: RenderedFeed,
    capped: bool,
    plain: Any,
    versions: dict[str, EventVersion],
) -> None:
    assert rendered.ics == fresh.ics
    assert rendered.versions == fresh.versions
    assert rendered.events == fresh.events
    assert rendered.skipped == fresh.skipped
    if not capped:
        assert rendered.events == plain.events
        assert rendered.skipped == plain.skipped
        assert rendered.versions == versions
    calendar = icalendar.Calendar.from_ical(rendered.ics)
    assert len(calendar.walk("VEVENT")) == len(rendered.events)


OPTIONS: dict[str, FeedOptions] = {
    "utc": feed_options(include=ALL, window_future=timedelta(days=120)),
    "zone-alarm": feed_options(
        include=ALL,
        timezone="Europe/Berlin",
        default_alarm=timedelta(minutes=15),
        window_past=timedelta(days=10),
        window_future=timedelta(days=60),
    ),
    "capped": feed_options(include=ALL, window_future=timedelta(days=200), max_bytes=15_000),
    "reservations": feed_options(include=["reservations"]),
}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("name", list(OPTIONS))
def test_a_cached_render_equals_a_render_from_nothing_after_every_change(
    name: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = OPTIONS[name]
    world = World(random.Random(f"{name}-{seed}"), (options.window_past, options.window_future))
    for _ in range(8):
        world.reservable.append(world.group())
        world.manageable.append(world.group())
        world.conferences.append(world.conference())
    cache = RenderCache()
    previous: dict[str, EventVersion] = {}
    ops: list[str] = []
    reuse, last, reused = seed % 2 == 1, Kept(), 0
    alive: list[AccountSnapshot] = []  # earlier snapshots still held: their groups stay alive
    chance = random.Random(f"reuse-{name}-{seed}")  # the world's changes stay as without it
    if reuse:
        monkeypatch.setattr(feed, "TRACK_FROM", 1)
    for _ in range(40):
        snap = given = world.snapshot()
        if reuse:
            given, count = shared(snap, last, chance)
            reused += count
            alive = [*alive[-2:], given]
        rendered = render_feed(given, options, previous, world.now, cache)
        fresh = render_feed(snap, options, previous, world.now, RenderCache())
        plain = collect_events(snap, options, world.now)
        capped = len(rendered.ics) > options.max_bytes - 2_000 or any(
            s.reason == "feed over its size cap (Google ignores feeds over ~1 MB)"
            for s in rendered.skipped
        )
        versions = next_versions(plain.events, previous, world.now)
        try:
            check(rendered, fresh, capped, plain, versions)
        except AssertionError as exc:
            raise AssertionError(f"after {ops}") from exc
        previous = dict(rendered.versions)
        if world.rng.random() < 0.1 and previous:  # versions that are not the last ones
            del previous[world.rng.choice(sorted(previous))]
        ops.append(world.step())
    assert {"add", "move", "horizon", "twice"} <= set(ops)
    assert reused > 100 if reuse else reused == 0  # objects were shared between renders
