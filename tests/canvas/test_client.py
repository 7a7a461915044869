"""The Canvas client against the simulator over HTTP: every endpoint, paging, throttling,
retries and errors."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from bridge import errors
from bridge.canvas.client import CanvasClient
from bridge.simulator.app import create_app
from bridge.simulator.sample import bulk_world
from bridge.simulator.server import serve_in_thread
from tests.helpers.options import canvas_client
from tests.helpers.sim import SAMPLE_NOW, Sim


def client(sim: Sim, who: str = "alice", **kw: object) -> CanvasClient:
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("backoff_cap", 0.05)
    return canvas_client(sim.url, sim.tokens[who], **kw)  # type: ignore[arg-type]


async def test_me_and_conferences(sim: Sim) -> None:
    async with client(sim) as c:
        me = await c.me()
        assert me.name == "Alice Liddell"
        confs = await c.conferences()
        titles = {x.title for x in confs}
        assert "Lecture 5: Recursion" in titles and "Team Ada stand-up" in titles
        ended = next(x for x in confs if x.title == "Guest talk: ENIAC")
        assert ended.recordings[0].created_at is not None  # integer epoch ms parsed
        assert ended.recordings[0].link and ended.join_url is None
        live = await c.conferences(live=True)
        assert [x.title for x in live] == ["Office hour (live now)"]


async def test_course_and_group_conferences(sim: Sim) -> None:
    async with client(sim, "teacher") as c:
        course = await c.course_conferences(1)
        assert {x.title for x in course} >= {"Lecture 5: Recursion", "Unscheduled Q&A"}
    async with client(sim, "alice") as c:
        group = await c.group_conferences(1)
        assert [x.title for x in group] == ["Team Ada stand-up"]
    async with client(sim, "carol") as c:
        with pytest.raises(errors.CanvasNotAuthorized) as info:
            await c.group_conferences(1)
        assert "GET /api/v1/groups/1/conferences" in str(info.value)


async def test_bookmark_paging_across_pages(sim: Sim) -> None:
    world, tokens = bulk_world(users=1, groups_per_user=3, conferences_per_user=250, now=SAMPLE_NOW)
    with serve_in_thread(create_app(world)) as server:
        async with canvas_client(server.url, tokens[0]) as c:
            confs = await c.conferences()
            assert len(confs) == 250 and len({x.id for x in confs}) == 250
            assert c.requests_made == 3
    assert world.stats.by_route["GET /api/v1/conferences"] == 3


async def test_numbered_paging_across_pages(sim: Sim) -> None:
    world, tokens = bulk_world(users=1, groups_per_user=250, conferences_per_user=1, now=SAMPLE_NOW)
    with serve_in_thread(create_app(world)) as server:
        async with canvas_client(server.url, tokens[0]) as c:
            groups = await c.appointment_groups(include=("appointments", "reserved_times"))
            assert [g.id for g in groups] == sorted(g.id for g in groups)
            assert len(groups) == 250 and c.requests_made == 3
            assert all(len(g.appointments) == 2 and len(g.reserved_times) == 1 for g in groups)


async def test_appointment_group_lifecycle(sim: Sim) -> None:
    start = SAMPLE_NOW + timedelta(days=10)
    async with client(sim, "teacher") as t:
        created = await t.create_appointment_group(
            ["course_1"],
            "Thesis talks",
            description="One slot each",
            participants_per_appointment=1,
            max_appointments_per_participant=1,
            new_appointments=[
                (start, start + timedelta(minutes=30)),
                (start + timedelta(minutes=30), start + timedelta(hours=1)),
            ],
        )
        assert created.workflow_state == "pending" and len(created.new_appointments) == 2
        updated = await t.update_appointment_group(
            created.id, publish=True, title="Thesis talks (v2)"
        )
        assert updated.workflow_state == "active" and updated.title == "Thesis talks (v2)"
        shown = await t.appointment_group(created.id, include=("child_events",))
        assert len(shown.appointments) == 2
        users = await t.appointment_group_users(created.id)
        assert {u.name for u in users} == {"Alice Liddell", "Bob Dylan", "Carol Danvers"}
        assert await t.appointment_group_groups(created.id) == []
        managed = await t.appointment_groups("manageable", include=("appointments", "child_events"))
        assert created.id in {g.id for g in managed}
    async with client(sim, "bob") as b:
        nxt = await b.next_appointment([created.id])
        assert nxt is not None and nxt.id == created.new_appointments[0].id
        res = await b.reserve(nxt.id, comments="chapter 2")
        assert res.parent_event_id == nxt.id and res.workflow_state == "locked"
        assert (await b.calendar_event(res.id)).comments == "chapter 2"
    async with client(sim, "teacher") as t:
        registered = await t.appointment_group_users(created.id, registration_status="registered")
        assert [u.name for u in registered] == ["Bob Dylan"]
        deleted = await t.delete_appointment_group(created.id, cancel_reason="moved online")
        assert deleted.workflow_state == "deleted"


async def test_group_participants(sim: Sim) -> None:
    async with client(sim, "teacher") as t:
        groups = await t.appointment_group_groups(3)
        assert [g.name for g in groups] == ["Project Team Ada", "Project Team Babbage"]
        assert await t.appointment_group_users(3) == []


async def test_reserve_swap_and_cancel(sim: Sim) -> None:
    async with client(sim, "alice") as a:
        [office] = [
            g
            for g in await a.appointment_groups(include=("appointments", "reserved_times"))
            if g.title == "Office hours"
        ]
        mine = office.reserved_times[0].id
        free = next(s for s in office.appointments if s.available_slots)
        with pytest.raises(errors.ReservationRefused) as refused:
            await a.reserve(free.id)
        assert refused.value.canvas_message == "participant has met per-participant limit"
        assert refused.value.reservations[0]["id"] == mine
        moved = await a.reserve(free.id, cancel_existing=True)
        assert moved.parent_event_id == free.id
        cancelled = await a.cancel_reservation(moved.id, cancel_reason="from my calendar")
        assert cancelled.workflow_state == "deleted"
        full = next(
            s
            for s in office.appointments
            if s.available_slots == 0 and s.id != free.id and not s.reserved
        )
        with pytest.raises(errors.ReservationRefused, match="all slots filled"):
            await a.reserve(full.id)


async def test_past_reservation_refused(sim: Sim) -> None:
    past = next(r for r in sim.world.reservations.values() if r.comments == "Missed lecture")
    async with client(sim, "carol") as c:
        with pytest.raises(errors.ReservationRefused) as info:
            await c.cancel_reservation(past.id)
    assert info.value.canvas_message == "Cannot create or change reservation for past appointment"
    assert info.value.status == 403


@pytest.mark.parametrize("kind", ["throttle403", "throttle429"])
async def test_recovers_from_throttling(sim: Sim, kind: str) -> None:
    sim.world.faults.add(kind, path="/api/v1/users/self", count=2)  # type: ignore[arg-type]
    seen = []
    async with client(sim, on_response=seen.append) as c:
        assert (await c.me()).name == "Alice Liddell"
    assert [i.throttled for i in seen] == [True, True, False]
    assert c.requests_made == 3


async def test_throttling_gives_up_with_a_transient_error(sim: Sim) -> None:
    sim.world.faults.add("throttle429", path="/api/v1/users/self", count=None)
    async with client(sim, max_retries=2) as c:
        with pytest.raises(errors.CanvasThrottled) as info:
            await c.me()
    assert isinstance(info.value, errors.TransientError) and c.requests_made == 3


async def test_retries_5xx_then_succeeds(sim: Sim) -> None:
    sim.world.faults.add("status", path="/api/v1/conferences", count=2, status=503)
    async with client(sim) as c:
        assert len(await c.conferences()) > 0
        assert c.requests_made == 3


async def test_connection_reset_is_retried_for_reads(sim: Sim) -> None:
    sim.world.faults.add("reset", path="/api/v1/users/self", count=1)
    async with client(sim) as c:
        assert (await c.me()).id == 3
        assert c.requests_made == 2


async def test_write_is_not_retried_after_it_may_have_reached_canvas(sim: Sim) -> None:
    sim.world.faults.add("status", path="/reservations", count=1, status=502)
    async with client(sim, "bob") as b:
        with pytest.raises(errors.CanvasUnavailable):
            await b.reserve(1001)
        assert b.requests_made == 1


async def test_invalid_token_fails_once_without_leaking(
    sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "not-a-real-token-8f3a9c"
    async with canvas_client(sim.url, secret, backoff_base=0.01) as c:
        with pytest.raises(errors.InvalidToken) as info:
            await c.me()
        assert c.requests_made == 1
    assert sim.world.stats.by_status[401] == 1
    assert "invalid access token" in str(info.value).lower() and "GET /api/v1/users/self" in str(
        info.value
    )
    assert info.value.exit_code == errors.CanvasAuthError.exit_code
    assert (
        secret not in str(info.value) and secret not in repr(info.value) and secret not in repr(c)
    )
    assert secret not in caplog.text


@pytest.mark.parametrize(
    ("state", "error"), [("revoked", errors.RevokedToken), ("expired", errors.ExpiredToken)]
)
async def test_revoked_and_expired_tokens(sim: Sim, state: str, error: type[Exception]) -> None:
    sim.world.revoke_token(sim.tokens["bob"], state)  # type: ignore[arg-type]
    async with client(sim, "bob") as c:
        with pytest.raises(error):
            await c.me()


@pytest.mark.parametrize("kind", ["malformed", "html", "truncated"])
async def test_garbage_bodies_are_bad_responses(sim: Sim, kind: str) -> None:
    sim.world.faults.add(kind, path="/api/v1/conferences", count=1)  # type: ignore[arg-type]
    async with client(sim) as c:
        with pytest.raises(errors.CanvasBadResponse) as info:
            await c.conferences()
    assert "GET /api/v1/conferences" in str(info.value)


async def test_wrong_shape_is_a_bad_response(sim: Sim) -> None:
    async with client(sim) as c:
        with pytest.raises(errors.CanvasNotFound):
            await c.appointment_group(999)


async def test_validation_error_carries_canvas_message(sim: Sim) -> None:
    start = SAMPLE_NOW + timedelta(days=3)
    async with client(sim, "teacher") as t:
        with pytest.raises(
            errors.CanvasValidationError, match="Appointment end time precedes start time"
        ):
            await t.create_appointment_group(
                ["course_1"], "Backwards", new_appointments=[(start, start - timedelta(hours=1))]
            )


def test_bad_base_url_is_refused_by_the_client_too() -> None:
    # config and CLI name their key first (tests/config, tests/canvas/test_cli.py)
    with pytest.raises(ValueError, match="not an http"):
        canvas_client("canvas.example.edu", "tok")


@pytest.mark.parametrize(
    "title",
    ["plain", "lone \\ud83d surrogate", "pair \\ud83d\\ude00"],
    ids=["fast-path", "lone-surrogate", "surrogate-pair"],
)
async def test_a_bad_item_in_a_page_is_named_alike_on_both_parsing_paths(title: str) -> None:
    """A page whose body may hold a surrogate is validated item by item (surrogates replaced);
    any other page in one call. Either way a bad item names its field, and good ones parse."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    bad = False

    async def conferences(request: object) -> Response:
        second = '{"id": "not a number"}' if bad else '{"id": 2, "title": "two"}'
        body = f'{{"conferences": [{{"id": 1, "title": "{title}"}}, {second}]}}'
        return Response(body.encode(), media_type="application/json")

    app = Starlette(routes=[Route("/api/v1/conferences", conferences)])
    with serve_in_thread(app) as server:
        async with canvas_client(server.url, "token-1234567") as c:
            found = await c.conferences()
            assert [x.id for x in found] == [1, 2]
            assert "\ud83d" not in found[0].title  # a lone surrogate was replaced
            bad = True
            with pytest.raises(errors.CanvasBadResponse) as info:
                await c.conferences()
    assert "unexpected Conference from Canvas: id: Input should be a valid integer" in str(
        info.value
    )
