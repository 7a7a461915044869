"""The poller gathers an account's snapshot in exactly the minimum number of requests."""

from __future__ import annotations

import pytest

from bridge import errors
from bridge.canvas.poller import minimum_requests, poll_account
from bridge.simulator.app import create_app
from bridge.simulator.sample import bulk_world
from bridge.simulator.server import serve_in_thread
from tests.helpers.options import canvas_client, poll_options
from tests.helpers.sim import SAMPLE_NOW, Sim


async def test_student_snapshot(sim: Sim) -> None:
    async with canvas_client(sim.url, sim.tokens["alice"]) as c:
        snap = await poll_account(c, "canvas.sim", poll_options())
    assert snap.user.name == "Alice Liddell" and snap.canvas_host == "canvas.sim"
    assert {g.title for g in snap.reservable} == {"Office hours", "Project review", "Team check-in"}
    assert snap.manageable == []
    reserved = [t for g in snap.reservable for t in g.reserved_times]
    assert len(reserved) == 2  # office hours + project review (the team booking is a Group one)
    assert c.requests_made == minimum_requests(len(snap.conferences), len(snap.reservable), 0)


async def test_teacher_snapshot_with_course_conferences(sim: Sim) -> None:
    async with canvas_client(sim.url, sim.tokens["teacher"]) as c:
        snap = await poll_account(
            c, "canvas.sim", poll_options(conference_contexts=["course_1", "course_2"])
        )
    assert {g.title for g in snap.manageable} >= {
        "Office hours",
        "Exam viewing (draft)",
        "Undated draft",
    }
    booked = [e for g in snap.manageable for s in g.appointments for e in (s.child_events or [])]
    assert any(e.user and e.user.name == "Alice Liddell" for e in booked)
    assert len({c.id for c in snap.conferences}) == len(snap.conferences)
    assert c.requests_made == 1 + 1 + 1 + 1 + 2


async def test_poll_is_minimal_at_scale() -> None:
    world, tokens = bulk_world(
        users=1, groups_per_user=250, conferences_per_user=35, now=SAMPLE_NOW
    )
    with serve_in_thread(create_app(world)) as server:
        async with canvas_client(server.url, tokens[0]) as c:
            snap = await poll_account(c, "canvas.sim", poll_options())
    assert len(snap.reservable) == 250 and len(snap.conferences) == 35
    assert c.requests_made == minimum_requests(35, 250, 0) == 6


async def test_failed_list_fails_the_whole_poll(sim: Sim) -> None:
    sim.world.faults.add("status", path="/api/v1/appointment_groups", count=None, status=500)
    async with canvas_client(sim.url, sim.tokens["alice"], max_retries=1, backoff_base=0.01) as c:
        with pytest.raises(errors.CanvasUnavailable):
            await poll_account(c, "canvas.sim", poll_options())
