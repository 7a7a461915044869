"""The poller hands back the last validated poll's objects for pages whose bytes did not change
(``ParsedPages``), new objects for a changed page, and the objects it reuses cannot be changed.
"""

from __future__ import annotations

import pydantic
import pytest

from bridge import errors
from bridge.canvas.client import RawList
from bridge.canvas.poller import FetchedPoll, ParsedPages, fetch_account
from bridge.model.canvas import AccountSnapshot, AppointmentGroup, Profile
from bridge.simulator.app import create_app
from bridge.simulator.sample import bulk_world
from bridge.simulator.server import serve_in_thread
from bridge.simulator.world import World
from tests.helpers.options import canvas_client, poll_options
from tests.helpers.sim import SAMPLE_NOW


async def _poll(url: str, token: str, last: ParsedPages | None) -> AccountSnapshot:
    async with canvas_client(url, token) as client:
        fetched = await fetch_account(client, poll_options())
    return fetched.snapshot("canvas.sim", last)


def _world() -> tuple[World, str]:
    # 250 groups: pages of 100, 100 and 50 (kept); 5 conferences: one page (not kept)
    world, tokens = bulk_world(users=1, groups_per_user=250, conferences_per_user=5, now=SAMPLE_NOW)
    return world, tokens[0]


def _same(a: list[AppointmentGroup], b: list[AppointmentGroup]) -> list[bool]:
    return [x is y for x, y in zip(a, b, strict=True)]


async def test_an_unchanged_page_yields_the_same_objects_and_a_changed_page_new_ones() -> None:
    world, token = _world()
    last = ParsedPages()
    with serve_in_thread(create_app(world)) as server:
        first = await _poll(server.url, token, last)
        assert len(first.reservable) == 250 and len(last) == 3
        again = await _poll(server.url, token, last)
        renamed = first.reservable[-1]  # on the last page
        world.appointment_groups[renamed.id].title = "Slots renamed"
        third = await _poll(server.url, token, last)
        scratch = await _poll(server.url, token, None)
    assert all(_same(first.reservable, again.reservable))
    # a one-page list is not kept: equal conferences, new objects
    assert again.conferences == first.conferences
    assert not any(a is b for a, b in zip(first.conferences, again.conferences, strict=True))
    assert _same(first.reservable, third.reservable) == [True] * 200 + [False] * 50
    assert third.reservable[-1].title == "Slots renamed"
    assert third.reservable[200:-1] == first.reservable[200:-1]  # equal, yet new objects
    assert not any(_same(third.reservable, scratch.reservable))  # without it: all new
    assert scratch == third.model_copy(update={"fetched_at": scratch.fetched_at})


def _raw(*pages: bytes) -> RawList[AppointmentGroup]:
    kinds = ("application/json",) * len(pages)
    return RawList(AppointmentGroup, "/api/v1/appointment_groups", None, pages, kinds)


def _fetched(raw: RawList[AppointmentGroup]) -> FetchedPoll:
    return FetchedPoll(Profile(id=1, name="Ada"), (), raw, None)


def test_a_poll_that_fails_to_validate_keeps_the_last_valid_pages() -> None:
    one, two = b'[{"id": 1, "title": "a"}]', b'[{"id": 2, "title": "b"}]'
    last = ParsedPages()
    first = _fetched(_raw(one, two)).snapshot("h", last)
    with pytest.raises(errors.CanvasBadResponse):
        _fetched(_raw(one, b'[{"id": "not a number"}]')).snapshot("h", last)
    assert len(last) == 2
    again = _fetched(_raw(one, two)).snapshot("h", last)
    assert all(_same(first.reservable, again.reservable))
    _fetched(_raw(b"[]", one)).snapshot("h", last)  # only the last poll's pages are kept
    assert len(last) == 2
    moved = _fetched(_raw(one, two)).snapshot("h", last)
    assert _same(first.reservable, moved.reservable) == [True, False]


async def test_a_reused_object_cannot_be_changed() -> None:
    """Frozen all the way down: no attribute set, no nested list to append to."""
    world, token = _world()
    last = ParsedPages()
    with serve_in_thread(create_app(world)) as server:
        first = await _poll(server.url, token, last)
        group = first.reservable[0]
        with pytest.raises(pydantic.ValidationError):
            group.title = "changed"  # type: ignore[misc]
        with pytest.raises(AttributeError):
            group.appointments.append(group.appointments[0])  # type: ignore[attr-defined]
        with pytest.raises(AttributeError):
            group.reserved_times.clear()  # type: ignore[attr-defined]
        slot = group.appointments[0]
        with pytest.raises(pydantic.ValidationError):
            slot.start_at = None  # type: ignore[misc]
        first.reservable.pop(0)  # the snapshot's own list: nothing the next poll reuses
        again = await _poll(server.url, token, last)
    assert again.reservable[0] is group
    assert len(again.reservable) == 250
    assert isinstance(group.appointments, tuple) and group.appointments[0] is slot
