"""The render cache reuses a group's events only when nothing its mapping reads has changed.

Its key is built from the fields the mapping reads (not the whole group serialised): the first
test records every attribute the mappings and the keys read and checks the key covers all the
mapping reads; the others check a cached re-render equals a fresh render after each change.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from bridge.mapping import RenderCache, feed, render_feed
from bridge.mapping.bookings import (
    managed_key,
    managed_slot_events,
    reservation_events,
    reservation_key,
)
from bridge.model.canvas import AccountSnapshot, AppointmentGroup
from tests.helpers.options import feed_options

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


def group_data(**changes: Any) -> dict[str, Any]:
    start = NOW + timedelta(days=1)
    slot_a = {
        "id": 501,
        "start_at": start,
        "end_at": start + timedelta(minutes=20),
        "reserved": True,
        "reserve_comments": "bring the draft",
        "participants_per_appointment": 3,
        "child_events_count": 2,
        "child_events": [
            {
                "id": 9001,
                "own_reservation": True,
                "comments": "me",
                "user": {"id": 7, "name": "Ada"},
            },
            {"id": 9002, "comments": "us", "group": {"id": 3, "name": "Team Ada"}},
        ],
    }
    slot_b = {
        "id": 502,
        "start_at": start + timedelta(hours=1),
        "end_at": start + timedelta(hours=1, minutes=20),
    }
    data: dict[str, Any] = {
        "id": 40,
        "title": "Office hours",
        "description": "<p>Questions <b>welcome</b></p>",
        "location_name": "Room 1",
        "location_address": "Main St",
        "html_url": "https://canvas.example.edu/appointment_groups/40",
        "context_codes": ["course_1"],
        "participants_per_appointment": 2,
        "appointments": [slot_a, slot_b],
        "reserved_times": [
            {"id": 9100, "start_at": slot_b["start_at"], "end_at": slot_b["end_at"]},
        ],
    }
    data.update(changes)
    return data


class Reads:
    """Stands in for a model and records each attribute path read through it."""

    def __init__(self, target: Any, path: str, log: set[str]) -> None:
        self._target, self._path, self._log = target, path, log

    def __getattr__(self, name: str) -> Any:
        path = f"{self._path}.{name}"
        self._log.add(path)
        return _wrap(getattr(self._target, name), path, self._log)

    def __bool__(self) -> bool:
        return True


def _wrap(value: Any, path: str, log: set[str]) -> Any:
    if isinstance(value, BaseModel):
        return Reads(value, path, log)
    if isinstance(value, list):
        return [_wrap(v, f"{path}[]", log) for v in value]
    return value


def reads(func: Callable[[Any], Any], group: AppointmentGroup) -> set[str]:
    log: set[str] = set()
    func(Reads(group, "group", log))
    return log


@pytest.mark.parametrize(
    ("mapping", "key"),
    [
        (lambda g: reservation_events(g, "canvas.example.edu", {}), reservation_key),
        (lambda g: managed_slot_events(g, "canvas.example.edu"), managed_key),
    ],
    ids=["reservations", "managed"],
)
def test_the_key_covers_everything_the_mapping_reads(
    mapping: Callable[[Any], Any], key: Callable[[Any], Any]
) -> None:
    group = AppointmentGroup.model_validate(group_data())
    assert mapping(group)  # the data reaches every branch worth reading
    missing = reads(mapping, group) - reads(key, group)
    assert not missing, f"the cache key leaves out {sorted(missing)}"


def snapshot(**changes: Any) -> AccountSnapshot:
    return AccountSnapshot.model_validate(
        {
            "canvas_host": "canvas.example.edu",
            "fetched_at": NOW,
            "user": {"id": 7, "name": "Ada"},
            "reservable": [group_data(**changes)],
            "manageable": [group_data(**changes)],
        }
    )


CHANGES: list[dict[str, Any]] = [
    {"title": "Office hours (moved)"},
    {"description": "<p>New text</p>"},
    {"location_name": "Room 2"},
    {"participants_per_appointment": 5},
    {"reserved_times": []},
    {"appointments": []},
    {"html_url": "https://canvas.example.edu/appointment_groups/41"},
]


@pytest.mark.parametrize("change", CHANGES, ids=[next(iter(c)) for c in CHANGES])
@pytest.mark.parametrize("kind", ["reservations", "managed_slots"])
def test_a_cached_re_render_after_a_change_equals_a_fresh_render(
    change: dict[str, Any], kind: str
) -> None:
    options = feed_options(include=[kind])
    cache = RenderCache()
    first = render_feed(snapshot(), options, {}, NOW, cache)
    later = NOW + timedelta(minutes=5)
    cached = render_feed(snapshot(**change), options, first.versions, later, cache)
    fresh = render_feed(snapshot(**change), options, first.versions, later)
    assert cached.ics == fresh.ics
    unchanged = render_feed(snapshot(**change), options, cached.versions, later, cache)
    assert unchanged.ics == cached.ics


def _groups(count: int) -> AccountSnapshot:
    groups = [{**group_data(), "id": 1000 + n} for n in range(count)]
    return snapshot().model_copy(
        update={"reservable": [AppointmentGroup.model_validate(g) for g in groups]}
    )


@pytest.mark.parametrize(("count", "tracked"), [(150, True), (20, False)])
def test_a_group_seen_as_the_same_object_needs_no_key(
    count: int, tracked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From ``TRACK_FROM`` groups the cache knows a group it saw by identity and builds no key
    for it; a new equal-valued group (or any group of a small snapshot) gets its key built."""
    keys: list[int] = []

    def counted(group: AppointmentGroup) -> tuple[object, ...]:
        keys.append(group.id)
        return reservation_key(group)

    monkeypatch.setattr(feed, "reservation_key", counted)
    options = feed_options(include=["reservations"])
    snap, equal = _groups(count), _groups(count)
    cache = RenderCache()
    first = render_feed(snap, options, {}, NOW, cache)
    keys.clear()
    same = render_feed(snap, options, first.versions, NOW, cache)  # the very objects
    assert len(keys) == (0 if tracked else count)
    keys.clear()
    again = render_feed(equal, options, first.versions, NOW, cache)  # equal, new objects
    assert len(keys) == count
    keys.clear()
    render_feed(equal, options, first.versions, NOW, cache)  # known by identity from now on
    assert len(keys) == (0 if tracked else count)
    assert same.ics == again.ics == first.ics
