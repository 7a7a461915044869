"""Canvas's JSON shapes (``canvas-behaviour.md`` §1.2, §2.3, §2.4), quirks included."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bridge.simulator import rules
from bridge.simulator.world import (
    Reservation,
    SimAppointmentGroup,
    SimConference,
    SimUser,
    Slot,
    StudentGroup,
    World,
)


def iso(value: datetime | None) -> str | None:
    """Canvas times: UTC, second precision, ``Z``."""
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def base(world: World) -> str:
    return f"https://{world.host}"


def user_json(user: SimUser) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "created_at": "2020-01-01T00:00:00Z",
        "sortable_name": user.sortable_name,
        "short_name": user.short_name,
    }


def profile_json(user: SimUser) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "short_name": user.short_name,
        "sortable_name": user.sortable_name,
        "primary_email": f"{user.login_id}@example.edu",
        "login_id": user.login_id,
        "time_zone": user.time_zone,
        "locale": None,
    }


def group_json(world: World, group: StudentGroup) -> dict[str, Any]:
    return {
        "id": group.id,
        "name": group.name,
        "group_category_id": group.category_id,
        "members_count": len(group.members),
        "users": [{"id": u, "name": world.users[u].name} for u in group.members],
    }


def conference_json(world: World, conf: SimConference) -> dict[str, Any]:
    context = "courses" if conf.context_type == "Course" else "groups"
    recordings = [
        {
            "recording_id": r.recording_id,
            "title": r.title,
            "duration_minutes": r.duration_minutes,
            "playback_url": None,
            "playback_formats": [
                {
                    "type": "presentation",
                    "url": r.url,
                    "length": r.duration_minutes,
                    "translated_type": "Presentation",
                    "show_to_students": True,
                }
            ],
            "created_at": r.created_at_ms,  # BigBlueButton: integer epoch milliseconds
        }
        for r in conf.recordings
    ]
    start_at = conf.start_at or conf.started_at
    end_at = conf.end_at or conf.ended_at
    if end_at is None and start_at is not None and conf.duration is not None:
        from datetime import timedelta

        end_at = start_at + timedelta(minutes=conf.duration)
    return {
        "id": conf.id,
        "title": conf.title,
        "conference_type": conf.conference_type,
        "description": conf.description,
        "duration": conf.duration,
        "ended_at": iso(conf.ended_at),
        "started_at": iso(conf.started_at),
        "start_at": iso(start_at),
        "end_at": iso(end_at),
        "conference_key": f"instructure_web_conference_{conf.id:08x}",
        "context_type": conf.context_type,
        "context_id": conf.context_id,
        "users": sorted(conf.participants),
        "invitees": sorted(u for u, t in conf.participants.items() if t == "invitee"),
        "attendees": sorted(u for u, t in conf.participants.items() if t == "attendee"),
        "has_advanced_settings": False,
        "long_running": conf.duration is None,
        "has_calendar_event": 1 if conf.start_at else 0,
        "user_settings": {"record": True},
        "recordings": recordings,
        "url": f"{base(world)}/{context}/{conf.context_id}/conferences/{conf.id}",
        "join_url": None,
    }


def _event_common(
    world: World,
    event_id: int,
    created: datetime,
    updated: datetime,
    group: SimAppointmentGroup,
    slot: Slot,
) -> dict[str, Any]:
    """Fields slots and reservations share: a reservation inherits its slot's (LOCKED_ATTRIBUTES)."""
    return {
        "id": event_id,
        "created_at": iso(created),
        "updated_at": iso(updated),
        "title": group.title,
        "description": group.description,
        "location_name": group.location_name,
        "location_address": group.location_address,
        "start_at": iso(slot.start_at),
        "end_at": iso(slot.end_at),
        "all_context_codes": ",".join(group.context_codes),
        "context_name": group.title,
        "url": f"{base(world)}/api/v1/calendar_events/{event_id}",
        "html_url": f"{base(world)}/calendar?event_id={event_id}&include_contexts={group.context_codes[0]}",
        "all_day": False,
        "all_day_date": None,
        "series_uuid": None,
        "rrule": None,
        "blackout_date": False,
        "hidden": False,
        "type": "event",
        "important_dates": False,
        "duplicates": [],
        "context_color": None,
    }


def _group_fields(
    world: World, group: SimAppointmentGroup, viewer: SimUser | None
) -> dict[str, Any]:
    return {
        "appointment_group_id": group.id,
        "appointment_group_url": f"{base(world)}/api/v1/appointment_groups/{group.id}",
        "can_manage_appointment_group": bool(viewer and rules.is_manager(world, viewer, group)),
        "participant_type": group.participant_type,
    }


def reservation_json(
    world: World, res: Reservation, viewer: SimUser | None, *, nested: bool = False
) -> dict[str, Any]:
    slot = world.slots[res.slot_id]
    group = world.appointment_groups[slot.group_id]
    data = _event_common(world, res.id, res.created_at, res.updated_at, group, slot)
    codes = ",".join(group.context_codes)
    data.update(
        {
            "workflow_state": res.workflow_state,
            "comments": res.comments,
            "parent_event_id": slot.id,
            "context_code": f"user_{res.participant_id}"
            if res.participant_type == "User"
            else f"group_{res.participant_id}",
            "child_events": [],
            "child_events_count": 0,
        }
    )
    data.update(_group_fields(world, group, viewer))
    if res.participant_type == "User":
        data["effective_context_code"] = codes
    if nested:
        if res.participant_type == "User":
            data["user"] = user_json(world.users[res.participant_id])
        else:
            data["group"] = group_json(world, world.groups[res.participant_id])
        if viewer is not None and rules.owns_reservation(world, viewer, res):
            data["own_reservation"] = True
    return data


def slot_json(
    world: World, slot: Slot, viewer: SimUser, *, include_children: bool
) -> dict[str, Any]:
    group = world.appointment_groups[slot.group_id]
    reservations = rules.active_reservations(world, slot)
    data = _event_common(world, slot.id, slot.created_at, slot.updated_at, group, slot)
    codes = ",".join(group.context_codes)
    data.update(
        {
            "workflow_state": slot.workflow_state,
            "comments": None,
            "parent_event_id": None,
            "context_code": f"appointment_group_{group.id}",
            "effective_context_code": codes,
            "child_events_count": len(reservations),
        }
    )
    data.update(_group_fields(world, group, viewer))
    participant = rules.participant_for(world, viewer, group)
    if rules.is_manager(world, viewer, group) or participant is None:
        data["reserve_url"] = (
            f"{base(world)}/api/v1/calendar_events/{slot.id}/reservations/%7B%7B%20id%20%7D%7D"
        )
    else:
        data["reserve_url"] = (
            f"{base(world)}/api/v1/calendar_events/{slot.id}/reservations/{participant.id}"
        )
        own = [
            r
            for r in reservations
            if (r.participant_type, r.participant_id) == (participant.type, participant.id)
        ]
        data["reserved"] = bool(own)
        data["reserve_comments"] = ", ".join(r.comments for r in own if r.comments)
    limit = rules.slot_limit(slot, group)
    if limit is not None:
        data["participants_per_appointment"] = limit
        data["available_slots"] = max(limit - len(reservations), 0)
    own_ids = {r.id for r in reservations if rules.owns_reservation(world, viewer, r)}
    if include_children or own_ids:
        visible = (
            reservations
            if rules.can_see_participants(world, viewer, group)
            else [r for r in reservations if r.id in own_ids]
        )
        data["child_events"] = [reservation_json(world, r, viewer, nested=True) for r in visible]
    return data


def appointment_group_json(
    world: World,
    group: SimAppointmentGroup,
    viewer: SimUser,
    include: set[str],
    *,
    include_past_slots: bool = False,
    new_slots: list[Slot] | None = None,
) -> dict[str, Any]:
    start_at, end_at = rules.group_dates(world, group)
    slots = rules.slots_of(world, group)
    participant = rules.participant_for(world, viewer, group)
    manager = rules.is_manager(world, viewer, group)
    now = world.clock.now()
    data: dict[str, Any] = {
        "id": group.id,
        "title": group.title,
        "description": group.description,
        "start_at": iso(start_at),
        "end_at": iso(end_at),
        "location_name": group.location_name,
        "location_address": group.location_address,
        "context_codes": [
            c
            for c in group.context_codes
            if manager or world.role_in(viewer, int(c.split("_")[1])) is not None
        ],
        "sub_context_codes": list(group.sub_context_codes),
        "workflow_state": group.workflow_state,
        "appointments_count": len(slots),
        "max_appointments_per_participant": group.max_appointments_per_participant,
        "min_appointments_per_participant": group.min_appointments_per_participant,
        "participants_per_appointment": group.participants_per_appointment,
        "participant_visibility": group.participant_visibility,
        "participant_type": group.participant_type,
        "url": f"{base(world)}/api/v1/appointment_groups/{group.id}",
        "html_url": f"{base(world)}/appointment_groups/{group.id}",
        "created_at": iso(group.created_at),
        "updated_at": iso(group.updated_at),
    }
    mine = rules.reservations_for(world, group, participant) if participant else []
    requiring = bool(
        participant
        and group.min_appointments_per_participant
        and len(mine) < group.min_appointments_per_participant
        and not all(rules.is_full(world, s, group) for s in slots)
    )
    data["requiring_action"] = requiring
    if "participant_count" in include:
        data["participant_count"] = sum(len(rules.active_reservations(world, s)) for s in slots)
    if "reserved_times" in include:
        data["reserved_times"] = [
            {
                "id": r.id,
                "start_at": iso(world.slots[r.slot_id].start_at),
                "end_at": iso(world.slots[r.slot_id].end_at),
            }
            for r in mine
            if r.participant_type == "User"
        ]
    if "all_context_codes" in include and manager:
        data["all_context_codes"] = list(group.context_codes)
    if "appointments" in include:
        shown = [s for s in slots if include_past_slots or s.end_at > now]
        data["appointments"] = [
            slot_json(world, s, viewer, include_children="child_events" in include) for s in shown
        ]
    if new_slots:
        data["new_appointments"] = [
            slot_json(world, s, viewer, include_children=False) for s in new_slots
        ]
    return data


def reservation_refused_json(world: World, refused: rules.ReservationRefused) -> list[Any]:
    """The body of Canvas's 400 when it refuses a reservation: the ones already held, listed."""
    return [
        {
            "attribute": "reservation",
            "type": "calendar_event",
            "message": refused.message,
            "reservations": [reservation_json(world, r, None) for r in refused.existing],
        }
    ]
