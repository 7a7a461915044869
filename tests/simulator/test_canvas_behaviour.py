"""The simulator behaves like real Canvas (canvas-behaviour.md), checked over raw HTTP."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from bridge.simulator.app import create_app
from bridge.simulator.sample import bulk_world, sample_world
from bridge.simulator.server import serve_in_thread
from tests.helpers.sim import SAMPLE_NOW, Sim


def http(sim: Sim, who: str = "alice") -> httpx.Client:
    return httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {sim.tokens[who]}"})


def test_numbered_link_header_is_canvas_shaped() -> None:
    world, tokens = bulk_world(users=1, groups_per_user=25, conferences_per_user=1, now=SAMPLE_NOW)
    with serve_in_thread(create_app(world)) as server:
        r = httpx.get(
            f"{server.url}/api/v1/appointment_groups",
            params=[
                ("scope", "reservable"),
                ("include[]", "appointments"),
                ("page", "2"),
                ("per_page", "10"),
                ("access_token", tokens[0]),
            ],
        )
    link = r.headers["link"]
    rels = [part.split('rel="')[1].rstrip('"') for part in link.split(",")]
    assert rels == ["current", "next", "prev", "first", "last"]
    assert ", <" not in link  # no space after the comma
    assert "access_token" not in link
    base = f"{server.url}/api/v1/appointment_groups?scope=reservable&include%5B%5D=appointments&scope=reservable"
    assert f'<{base}&page=3&per_page=10>; rel="next"' in link
    assert 'page=3&per_page=10>; rel="last"' in link
    assert len(r.json()) == 10


def test_pages_past_the_end_are_empty_and_per_page_is_capped() -> None:
    world, tokens = bulk_world(users=1, groups_per_user=5, conferences_per_user=1, now=SAMPLE_NOW)
    with serve_in_thread(create_app(world)) as server:
        auth = {"Authorization": f"Bearer {tokens[0]}"}
        assert (
            httpx.get(f"{server.url}/api/v1/appointment_groups?page=9", headers=auth).json() == []
        )
        r = httpx.get(f"{server.url}/api/v1/appointment_groups?per_page=500", headers=auth)
        assert "per_page=100" in r.headers["link"]


def test_conference_list_is_wrapped_and_quirky(sim: Sim) -> None:
    body = http(sim).get("/api/v1/conferences").json()
    assert set(body) == {"conferences"}
    conf = next(c for c in body["conferences"] if c["title"] == "Guest talk: ENIAC")
    assert conf["join_url"] is None and conf["url"].endswith(f"/courses/2/conferences/{conf['id']}")
    # an int, not a bool, as Canvas sends it; the guest talk has no calendar event
    assert type(conf["has_calendar_event"]) is int and conf["has_calendar_event"] == 0
    assert conf["long_running"] is False
    assert isinstance(conf["recordings"][0]["created_at"], int)
    assert conf["started_at"].endswith("Z") and len(conf["started_at"]) == 20
    study = next(c for c in body["conferences"] if c["title"] == "Study room (always open)")
    assert study["duration"] is None and study["long_running"] is True


def test_live_means_started_within_a_day_and_not_ended(sim: Sim) -> None:
    live = http(sim).get("/api/v1/conferences", params={"state": "live"}).json()["conferences"]
    # the always-open study room started 5 days ago: a "zombie", excluded like in Canvas
    assert [c["title"] for c in live] == ["Office hour (live now)"]
    sim.world.clock.advance(timedelta(days=2).total_seconds())
    assert (
        http(sim).get("/api/v1/conferences", params={"state": "live"}).json()["conferences"] == []
    )


def test_students_see_only_their_conferences(sim: Sim) -> None:
    carol = http(sim, "carol").get("/api/v1/courses/1/conferences").json()["conferences"]
    teacher = http(sim, "teacher").get("/api/v1/courses/1/conferences").json()["conferences"]
    assert "Office hour (live now)" not in {c["title"] for c in carol}
    assert "Office hour (live now)" in {c["title"] for c in teacher}


def test_disabled_conference_tab_is_404(sim: Sim) -> None:
    sim.world.courses[1].conferences_enabled = False
    r = http(sim, "teacher").get("/api/v1/courses/1/conferences")
    assert r.status_code == 404 and r.json() == {
        "message": "That page has been disabled for this course"
    }


def test_pending_groups_are_invisible_and_unreservable_to_students(sim: Sim) -> None:
    titles = {g["title"] for g in http(sim).get("/api/v1/appointment_groups").json()}
    assert "Exam viewing (draft)" not in titles
    managed = {
        g["title"]
        for g in http(sim, "teacher")
        .get("/api/v1/appointment_groups", params={"scope": "manageable"})
        .json()
    }
    assert {"Exam viewing (draft)", "Undated draft"} <= managed
    pending_slot = next(
        s.id
        for s in sim.world.slots.values()
        if sim.world.appointment_groups[s.group_id].title == "Exam viewing (draft)"
    )
    r = http(sim).post(f"/api/v1/calendar_events/{pending_slot}/reservations")
    assert r.status_code == 401 and r.json()["status"] == "unauthorized"


def test_slot_visibility_private_and_protected(sim: Sim) -> None:
    groups = (
        http(sim, "carol")
        .get(
            "/api/v1/appointment_groups",
            params=[("include[]", "appointments"), ("include[]", "child_events")],
        )
        .json()
    )
    review = next(g for g in groups if g["title"] == "Project review")  # protected
    office = next(g for g in groups if g["title"] == "Office hours")  # private
    first = review["appointments"][0]
    assert {e["user"]["name"] for e in first["child_events"]} == {"Alice Liddell", "Carol Danvers"}
    assert first["available_slots"] == 1 and first["workflow_state"] == "locked"
    booked = next(s for s in office["appointments"] if s["child_events_count"])
    assert booked["child_events"] == []  # private: carol sees nobody else's booking
    assert booked["reserve_url"].endswith(
        f"/reservations/{sim.world.user_by_token(sim.tokens['carol']).id}"
    )  # type: ignore[union-attr]
    teacher = http(sim, "teacher").get(f"/api/v1/appointment_groups/{office['id']}").json()
    assert teacher["appointments"][0]["reserve_url"].endswith("%7B%7B%20id%20%7D%7D")
    assert (
        len(teacher["appointments"]) == len(office["appointments"]) + 1
    )  # managers see the past slot


def test_unlimited_slots_have_no_available_slots_key(sim: Sim) -> None:
    with http(sim, "teacher") as c:
        created = c.post(
            "/api/v1/appointment_groups",
            data={
                "appointment_group[context_codes][]": "course_1",
                "appointment_group[title]": "Open door",
                "appointment_group[new_appointments][0][]": [
                    "2026-03-10T10:00:00Z",
                    "2026-03-10T11:00:00Z",
                ],
                "appointment_group[publish]": "1",
            },
        )
        assert created.status_code == 201
        slot = created.json()["new_appointments"][0]
    assert "available_slots" not in slot and "participants_per_appointment" not in slot


def test_reserve_errors_use_canvas_shapes_and_order(sim: Sim) -> None:
    office = next(g for g in sim.world.appointment_groups.values() if g.title == "Office hours")
    slots = sorted(
        (s for s in sim.world.slots.values() if s.group_id == office.id), key=lambda s: s.start_at
    )
    past, open_slot = slots[0], slots[1]
    assert past.end_at < sim.world.clock.now()
    r = http(sim, "bob").post(f"/api/v1/calendar_events/{past.id}/reservations")
    assert r.status_code == 403 and r.json() == {
        "message": "Cannot create or change reservation for past appointment"
    }
    r = http(sim, "bob").post(f"/api/v1/calendar_events/{open_slot.id}/reservations")
    body = r.json()
    assert (
        r.status_code == 400
        and body[0]["attribute"] == "reservation"
        and body[0]["type"] == "calendar_event"
    )
    assert (
        body[0]["message"] == "participant has met per-participant limit"
        and len(body[0]["reservations"]) == 1
    )
    r = http(sim, "bob").post(f"/api/v1/calendar_events/{open_slot.id}/reservations/99999")
    assert r.json()[0]["message"] == "invalid participant" and r.json()[0]["reservations"] == []


def test_cancel_existing_swaps_atomically_and_rolls_back(sim: Sim) -> None:
    world = sim.world
    office = next(g for g in world.appointment_groups.values() if g.title == "Office hours")
    bob_res = next(
        r
        for r in world.reservations.values()
        if world.users[r.participant_id].name == "Bob Dylan"
        and world.slots[r.slot_id].group_id == office.id
    )
    full = next(
        s
        for s in world.slots.values()
        if s.group_id == office.id
        and s.id != bob_res.slot_id
        and s.workflow_state == "locked"
        and s.end_at > world.clock.now()
    )
    r = http(sim, "bob").post(
        f"/api/v1/calendar_events/{full.id}/reservations", data={"cancel_existing": "true"}
    )
    assert r.json()[0]["message"] == "all slots filled"
    assert world.reservations[bob_res.id].workflow_state == "locked"  # rolled back
    free = next(
        s
        for s in world.slots.values()
        if s.group_id == office.id and s.workflow_state == "active" and s.end_at > world.clock.now()
    )
    r = http(sim, "bob").post(
        f"/api/v1/calendar_events/{free.id}/reservations", data={"cancel_existing": "1"}
    )
    assert (
        r.status_code == 200 and r.json()["parent_event_id"] == free.id and "user" not in r.json()
    )
    assert world.reservations[bob_res.id].workflow_state == "deleted"
    assert world.slots[bob_res.slot_id].workflow_state == "active"  # back to active when emptied


def test_cancel_rules(sim: Sim) -> None:
    alice_res = next(
        r for r in sim.world.reservations.values() if r.comments == "Question about recursion depth"
    )
    r = http(sim, "bob").delete(f"/api/v1/calendar_events/{alice_res.id}")
    assert r.status_code == 401
    r = http(sim).delete(
        f"/api/v1/calendar_events/{alice_res.id}", params={"cancel_reason": "sick"}
    )
    assert r.status_code == 200 and r.json()["workflow_state"] == "deleted"
    assert http(sim).delete(f"/api/v1/calendar_events/{alice_res.id}").status_code == 401
    past = next(r for r in sim.world.reservations.values() if r.comments == "Missed lecture")
    assert http(sim, "carol").delete(f"/api/v1/calendar_events/{past.id}").status_code == 403
    assert http(sim, "teacher").delete(f"/api/v1/calendar_events/{past.id}").status_code == 200


def test_teacher_moving_a_slot_moves_its_reservations(sim: Sim) -> None:
    res = next(
        r for r in sim.world.reservations.values() if r.comments == "Question about recursion depth"
    )
    slot = sim.world.slots[res.slot_id]
    new_start = slot.start_at + timedelta(days=1)
    r = http(sim, "teacher").put(
        f"/api/v1/calendar_events/{slot.id}",
        data={
            "calendar_event[start_at]": new_start.isoformat(),
            "calendar_event[end_at]": (new_start + timedelta(minutes=20)).isoformat(),
        },
    )
    assert r.status_code == 200
    mine = http(sim).get(f"/api/v1/calendar_events/{res.id}").json()
    assert mine["start_at"] == new_start.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (None, "Invalid access token."),
        ("revoked", "Revoked access token."),
        ("expired", "Expired access token."),
    ],
)
def test_token_errors(sim: Sim, state: str | None, message: str) -> None:
    token = "nope" if state is None else sim.tokens["bob"]
    if state:
        httpx.post(f"{sim.url}/_sim/tokens/{token}", json={"state": state})
    r = httpx.get(f"{sim.url}/api/v1/users/self", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json() == {"errors": [{"message": message}]}
    assert r.headers["www-authenticate"] == 'Bearer realm="canvas-lms"'


def test_throttling_leaky_bucket_and_modes(sim: Sim) -> None:
    httpx.post(f"{sim.url}/_sim/throttle", json={"hwm": 3, "outflow": 0, "mode": 429})
    statuses = [http(sim).get("/api/v1/users/self") for _ in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
    assert statuses[3].text == "429 Too Many Requests (Rate Limit Exceeded)\n"
    assert statuses[3].headers["x-rate-limit-remaining"] == "0.0"
    assert float(statuses[0].headers["x-rate-limit-remaining"]) == 2.0
    assert "retry-after" not in statuses[3].headers


def test_control_surface_is_off_by_default() -> None:
    with serve_in_thread(create_app(sample_world(SAMPLE_NOW))) as server:
        assert httpx.post(f"{server.url}/_sim/faults", json={"kind": "status"}).status_code == 404


def test_control_faults_and_stats_over_http(sim: Sim) -> None:
    assert (
        httpx.post(
            f"{sim.url}/_sim/faults", json={"kind": "status", "status": 502, "path": "users/self"}
        ).status_code
        == 201
    )
    assert http(sim).get("/api/v1/users/self").status_code == 502
    assert http(sim).get("/api/v1/users/self").status_code == 200
    stats = httpx.get(f"{sim.url}/_sim/stats").json()
    assert stats["by_route"]["GET /api/v1/users/self"] == 2 and stats["by_status"]["502"] == 1
    assert httpx.post(f"{sim.url}/_sim/faults", json={"kind": "explode"}).status_code == 400
