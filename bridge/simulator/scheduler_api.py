"""The Scheduler endpoints: appointment groups, slots, reservations (canvas-behaviour §2–§3)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from bridge.simulator import rules
from bridge.simulator import serialize as ser
from bridge.simulator.requests import Params
from bridge.simulator.responses import json_response, paged, parse_time, path_id
from bridge.simulator.rules import NOT_FOUND, UNAUTHORIZED, SimError
from bridge.simulator.world import SimAppointmentGroup, SimUser, Slot, World

AG = "appointment_group"


def _include(params: Params) -> set[str]:
    return set(params.getlist("include[]")) | set(params.getlist("include"))


def _group(request: Request, world: World) -> SimAppointmentGroup:
    group = world.appointment_groups.get(path_id(request))
    if group is None:
        raise SimError(404, NOT_FOUND)
    return group


async def list_groups(request: Request, world: World, user: SimUser, params: Params) -> Response:
    scope = params.get("scope") or "reservable"
    past = params.flag("include_past_appointments")
    codes = set(params.getlist("context_codes[]"))
    now = world.clock.now()
    found = []
    # Only groups of the user's courses can be reservable or manageable for them.
    mine = {g.id: g for cid in world.courses_of(user) for g in world.groups_by_course.get(cid, ())}
    for group in sorted(mine.values(), key=lambda g: g.id):
        if codes and not codes & set(group.context_codes):
            continue
        _, end_at = rules.group_dates(world, group)
        if scope == "manageable":
            if group.workflow_state == "deleted" or not rules.is_manager(world, user, group):
                continue
            if not past and end_at is not None and end_at < now:
                continue
        else:
            if (
                group.workflow_state != "active"
                or rules.participant_for(world, user, group) is None
            ):
                continue
            if not past and (end_at is None or end_at < now):
                continue
        found.append(ser.appointment_group_json(world, group, user, _include(params)))
    base = (
        f"/api/v1/appointment_groups?scope={scope}"
        if params.get("scope")
        else "/api/v1/appointment_groups"
    )
    return paged(request, found, base_path=base)


async def show_group(request: Request, world: World, user: SimUser, params: Params) -> Response:
    group = _group(request, world)
    if not rules.can_read(world, user, group):
        raise SimError(401, UNAUTHORIZED)
    include = _include(params) | {"appointments"}
    manager = rules.is_manager(world, user, group)
    return json_response(
        ser.appointment_group_json(world, group, user, include, include_past_slots=manager)
    )


def _new_slots(params: Params) -> list[tuple[datetime, datetime]]:
    pairs = []
    for pair in params.nested_pairs(f"{AG}[new_appointments]"):
        if len(pair) != 2:
            raise SimError(
                400,
                {
                    "errors": {
                        "appointments": [
                            {
                                "attribute": "appointments",
                                "type": "invalid",
                                "message": "a new appointment needs a start and an end",
                            }
                        ]
                    }
                },
            )
        pairs.append((parse_time(pair[0]), parse_time(pair[1])))
    return pairs


def _apply_fields(group: SimAppointmentGroup, params: Params) -> None:
    for key in ("title", "description", "location_name", "location_address"):
        value = params.get(f"{AG}[{key}]")
        if value is not None:
            setattr(group, key, value)
    for key in (
        "participants_per_appointment",
        "min_appointments_per_participant",
        "max_appointments_per_participant",
    ):
        if params.has(f"{AG}[{key}]"):
            setattr(group, key, params.int_or_none(f"{AG}[{key}]"))
    visibility = params.get(f"{AG}[participant_visibility]")
    if visibility is not None:
        if visibility not in ("private", "protected"):
            raise SimError(
                400,
                {
                    "errors": {
                        "participant_visibility": [
                            {
                                "attribute": "participant_visibility",
                                "type": "invalid",
                                "message": "is invalid",
                            }
                        ]
                    }
                },
            )
        group.participant_visibility = visibility  # type: ignore[assignment]
    subs = params.getlist(f"{AG}[sub_context_codes][]")
    if subs:
        group.sub_context_codes = subs


async def create_group(request: Request, world: World, user: SimUser, params: Params) -> Response:
    codes = [c for c in params.getlist(f"{AG}[context_codes][]") if c.startswith("course_")]
    ids = [int(c.removeprefix("course_")) for c in codes if c.removeprefix("course_").isdigit()]
    courses = [world.courses[i] for i in ids if i in world.courses]
    if not courses:
        raise SimError(404, NOT_FOUND)
    if any(c.concluded for c in courses):
        raise SimError(400, {"error": "cannot create an appointment group for a concluded course"})
    if any(c.roles.get(user.id) not in ("teacher", "ta") for c in courses):
        raise SimError(401, UNAUTHORIZED)
    title = params.get(f"{AG}[title]")
    if not title:
        raise SimError(
            400,
            {
                "errors": {
                    "title": [{"attribute": "title", "type": "blank", "message": "can't be blank"}]
                }
            },
        )
    pairs = _new_slots(params)
    error = rules.validate_slots(pairs, [])
    if error:
        raise SimError(400, error)
    group = world.add_appointment_group(title, [c.code for c in courses])
    _apply_fields(group, params)
    if params.flag(f"{AG}[publish]"):
        group.workflow_state = "active"
    slots = [world.add_slot(group, s, e) for s, e in pairs]
    return json_response(
        ser.appointment_group_json(world, group, user, set(), new_slots=slots), 201
    )


async def update_group(request: Request, world: World, user: SimUser, params: Params) -> Response:
    group = _group(request, world)
    if group.workflow_state == "deleted" or not rules.is_manager(world, user, group):
        raise SimError(401, UNAUTHORIZED)
    pairs = _new_slots(params)
    error = rules.validate_slots(pairs, rules.slots_of(world, group))
    if error:
        raise SimError(400, error)
    _apply_fields(group, params)
    if params.get(f"{AG}[publish]") == "1":  # update compares with == "1" (§2.1)
        group.workflow_state = "active"
    group.updated_at = world.clock.now()
    slots: list[Slot] = [world.add_slot(group, s, e) for s, e in pairs]
    return json_response(ser.appointment_group_json(world, group, user, set(), new_slots=slots))


async def delete_group(request: Request, world: World, user: SimUser, params: Params) -> Response:
    group = _group(request, world)
    if group.workflow_state == "deleted" or not rules.is_manager(world, user, group):
        raise SimError(401, UNAUTHORIZED)
    rules.delete_appointment_group(world, group)
    return json_response(ser.appointment_group_json(world, group, user, set()))


async def group_users(request: Request, world: World, user: SimUser, params: Params) -> Response:
    group = _group(request, world)
    if not rules.can_read(world, user, group):
        raise SimError(401, UNAUTHORIZED)
    if group.participant_type != "User":
        return json_response([])
    status = params.get("registration_status") or "all"
    students = sorted(
        {
            u
            for cid in rules.course_ids(group)
            for u, role in world.courses[cid].roles.items()
            if role == "student"
        },
        key=lambda u: (world.users[u].sortable_name, u),
    )
    registered = {
        r.participant_id
        for s in rules.slots_of(world, group)
        for r in rules.active_reservations(world, s)
    }
    if status == "registered":
        students = [u for u in students if u in registered]
    elif status == "unregistered":
        students = [u for u in students if u not in registered]
    return paged(request, [ser.user_json(world.users[u]) for u in students])


async def group_groups(request: Request, world: World, user: SimUser, params: Params) -> Response:
    group = _group(request, world)
    if not rules.can_read(world, user, group):
        raise SimError(401, UNAUTHORIZED)
    if group.participant_type != "Group":
        return json_response([])
    status = params.get("registration_status") or "all"
    groups = sorted(
        (g for g in world.groups.values() if g.category_id == group.group_category_id),
        key=lambda g: (g.name, g.id),
    )
    registered = {
        r.participant_id
        for s in rules.slots_of(world, group)
        for r in rules.active_reservations(world, s)
    }
    if status == "registered":
        groups = [g for g in groups if g.id in registered]
    elif status == "unregistered":
        groups = [g for g in groups if g.id not in registered]
    return paged(request, [ser.group_json(world, g) for g in groups])


async def next_appointment(
    request: Request, world: World, user: SimUser, params: Params
) -> Response:
    wanted = {int(i) for i in params.getlist("appointment_group_ids[]") if i.isdigit()}
    now = world.clock.now()
    candidates: list[Slot] = []
    for group in world.appointment_groups.values():
        if group.workflow_state != "active" or rules.participant_for(world, user, group) is None:
            continue
        if wanted and group.id not in wanted:
            continue
        _, end_at = rules.group_dates(world, group)
        if end_at is None or end_at < now:
            continue
        for slot in rules.slots_of(world, group):
            mine = any(
                r.made_by == user.id
                or (r.participant_type == "User" and r.participant_id == user.id)
                for r in rules.active_reservations(world, slot)
            )
            if slot.start_at > now and not mine and not rules.is_full(world, slot, group):
                candidates.append(slot)
                break
    candidates.sort(key=lambda s: (s.start_at, s.id))
    return json_response(
        [ser.slot_json(world, s, user, include_children=False) for s in candidates[:1]]
    )


async def show_event(request: Request, world: World, user: SimUser, params: Params) -> Response:
    event_id = path_id(request)
    if event_id in world.slots and world.slots[event_id].workflow_state != "deleted":
        slot = world.slots[event_id]
        if not rules.can_read(world, user, world.appointment_groups[slot.group_id]):
            raise SimError(401, UNAUTHORIZED)
        return json_response(ser.slot_json(world, slot, user, include_children=False))
    res = world.reservations.get(event_id)
    if res is None:
        raise SimError(404, NOT_FOUND)
    if not (
        rules.owns_reservation(world, user, res) or rules.can_manage_reservation(world, user, res)
    ):
        raise SimError(401, UNAUTHORIZED)
    return json_response(ser.reservation_json(world, res, user))


async def update_event(request: Request, world: World, user: SimUser, params: Params) -> Response:
    """Only managers moving a slot; reservations have no update (§3.3)."""
    event_id = path_id(request)
    slot = world.slots.get(event_id)
    if slot is None or slot.workflow_state == "deleted":
        if event_id in world.reservations:
            raise SimError(401, UNAUTHORIZED)
        raise SimError(404, NOT_FOUND)
    group = world.appointment_groups[slot.group_id]
    if not rules.is_manager(world, user, group):
        raise SimError(401, UNAUTHORIZED)
    start = params.get("calendar_event[start_at]")
    end = params.get("calendar_event[end_at]")
    rules.move_slot(
        world,
        slot,
        parse_time(start) if start else slot.start_at,
        parse_time(end) if end else slot.end_at,
    )
    return json_response(ser.slot_json(world, slot, user, include_children=False))


async def delete_event(request: Request, world: World, user: SimUser, params: Params) -> Response:
    event_id = path_id(request)
    if event_id in world.slots and event_id not in world.reservations:
        raise SimError(401, UNAUTHORIZED)
    res = rules.cancel(world, user, event_id)
    return json_response(ser.reservation_json(world, res, user))


async def reserve(request: Request, world: World, user: SimUser, params: Params) -> Response:
    raw_pid = request.path_params.get("participant_id") or params.get("participant_id")
    try:
        pid = int(raw_pid) if raw_pid else None
    except ValueError:
        pid = -1
    try:
        res = rules.reserve(
            world,
            user,
            path_id(request),
            participant_id=pid,
            comments=params.get("comments") or "",
            cancel_existing=params.flag("cancel_existing"),
        )
    except rules.ReservationRefused as refused:
        raise SimError(400, ser.reservation_refused_json(world, refused)) from None
    return json_response(ser.reservation_json(world, res, user))


def scheduler_routes() -> list[tuple[str, Any, list[str]]]:
    return [
        ("/api/v1/appointment_groups", list_groups, ["GET"]),
        ("/api/v1/appointment_groups", create_group, ["POST"]),
        ("/api/v1/appointment_groups/next_appointment", next_appointment, ["GET"]),
        ("/api/v1/appointment_groups/{id}", show_group, ["GET"]),
        ("/api/v1/appointment_groups/{id}", update_group, ["PUT"]),
        ("/api/v1/appointment_groups/{id}", delete_group, ["DELETE"]),
        ("/api/v1/appointment_groups/{id}/users", group_users, ["GET"]),
        ("/api/v1/appointment_groups/{id}/groups", group_groups, ["GET"]),
        ("/api/v1/calendar_events/{id}", show_event, ["GET"]),
        ("/api/v1/calendar_events/{id}", update_event, ["PUT"]),
        ("/api/v1/calendar_events/{id}", delete_event, ["DELETE"]),
        ("/api/v1/calendar_events/{id}/reservations", reserve, ["POST"]),
        ("/api/v1/calendar_events/{id}/reservations/{participant_id}", reserve, ["POST"]),
    ]
