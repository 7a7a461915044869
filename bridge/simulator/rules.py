"""Canvas's Scheduler rules: who may see, manage and reserve what, and how reserving works.

Each rule follows ``canvas-behaviour.md`` §2–§3 — the order of the checks, the statuses and the
exact English messages — because calbridge's write-back depends on telling them apart.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.simulator.world import (
    Reservation,
    SimAppointmentGroup,
    SimUser,
    Slot,
    World,
)

UNAUTHORIZED = {
    "status": "unauthorized",
    "errors": [{"message": "user not authorized to perform that action"}],
}
NOT_FOUND = {"errors": [{"message": "The specified resource does not exist."}]}
PAST_APPOINTMENT = {"message": "Cannot create or change reservation for past appointment"}


class SimError(Exception):
    """An error response: status and JSON body (or plain text)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Participant:
    type: str  # "User" | "Group"
    id: int


def course_ids(group: SimAppointmentGroup) -> list[int]:
    return [int(c.removeprefix("course_")) for c in group.context_codes if c.startswith("course_")]


def is_manager(world: World, user: SimUser, group: SimAppointmentGroup) -> bool:
    return any(world.role_in(user, cid) in ("teacher", "ta") for cid in course_ids(group))


def participant_for(world: World, user: SimUser, group: SimAppointmentGroup) -> Participant | None:
    """The user's participant in a group: themselves, or their student group (Group signups)."""
    if not any(world.role_in(user, cid) == "student" for cid in course_ids(group)):
        return None
    category = group.group_category_id
    if category is None:
        return Participant("User", user.id)
    for sg in world.user_groups(user):
        if sg.category_id == category:
            return Participant("Group", sg.id)
    return None


def can_read(world: World, user: SimUser, group: SimAppointmentGroup) -> bool:
    if group.workflow_state == "deleted":
        return False
    if is_manager(world, user, group):
        return True
    return group.workflow_state == "active" and participant_for(world, user, group) is not None


def can_see_participants(world: World, user: SimUser, group: SimAppointmentGroup) -> bool:
    if is_manager(world, user, group):
        return True
    return (
        group.participant_visibility == "protected"
        and participant_for(world, user, group) is not None
    )


def slots_of(world: World, group: SimAppointmentGroup) -> list[Slot]:
    slots = [s for s in world.slots_by_group.get(group.id, ()) if s.workflow_state != "deleted"]
    return sorted(slots, key=lambda s: (s.start_at, s.id))


def group_dates(
    world: World, group: SimAppointmentGroup
) -> tuple[datetime | None, datetime | None]:
    """A group's ``start_at``/``end_at`` are the min/max over its slots; null when it has none."""
    slots = slots_of(world, group)
    if not slots:
        return None, None
    return min(s.start_at for s in slots), max(s.end_at for s in slots)


def active_reservations(world: World, slot: Slot) -> list[Reservation]:
    rs = [r for r in world.reservations_by_slot.get(slot.id, ()) if r.workflow_state != "deleted"]
    return sorted(rs, key=lambda r: r.id)


def reservations_for(
    world: World, group: SimAppointmentGroup, participant: Participant
) -> list[Reservation]:
    held = [
        r
        for slot in slots_of(world, group)
        for r in world.reservations_by_slot.get(slot.id, ())
        if r.workflow_state != "deleted"
        and (r.participant_type, r.participant_id) == (participant.type, participant.id)
    ]
    return sorted(held, key=lambda r: r.id)


def slot_limit(slot: Slot, group: SimAppointmentGroup) -> int | None:
    if slot.participants_per_appointment is not None:
        return slot.participants_per_appointment
    return group.participants_per_appointment


def is_full(world: World, slot: Slot, group: SimAppointmentGroup) -> bool:
    limit = slot_limit(slot, group)
    return limit is not None and len(active_reservations(world, slot)) >= limit


class ReservationRefused(Exception):
    """Canvas's 400 for a reservation it refuses; the caller renders ``existing`` as JSON.

    The rules decide, :mod:`bridge.simulator.serialize` renders: keeping the rendering out of
    here keeps the import graph one-way (serialize reads the rules, never the reverse).
    """

    def __init__(self, message: str, existing: list[Reservation]) -> None:
        super().__init__(message)
        self.message = message
        self.existing = existing


def reserve(
    world: World,
    user: SimUser,
    slot_id: int,
    *,
    participant_id: int | None,
    comments: str,
    cancel_existing: bool,
) -> Reservation:
    """``POST /calendar_events/:id/reservations[/:participant_id]``, checks in Canvas's order."""
    slot = world.slots.get(slot_id)
    group = world.appointment_groups.get(slot.group_id) if slot else None
    if slot is None or slot.workflow_state == "deleted":
        raise SimError(404, NOT_FOUND)
    if group is None or group.workflow_state == "deleted":
        raise SimError(404, NOT_FOUND)
    manager = is_manager(world, user, group)
    own = participant_for(world, user, group) if group.workflow_state == "active" else None
    # 1. authorized_action(:reserve)
    if not manager and own is None:
        raise SimError(401, UNAUTHORIZED)
    now = world.clock.now()
    # 2. check_for_past_signup
    if slot.end_at < now and not manager:
        raise SimError(403, PAST_APPOINTMENT)
    # 3. participant resolution
    participant: Participant | None
    if manager and participant_id is not None:
        participant = _possible_participant(world, group, participant_id)
    else:
        participant = own
        if (
            participant is not None
            and participant_id is not None
            and participant_id != participant.id
        ):
            participant = None
    if participant is None:
        raise ReservationRefused("invalid participant", [])
    # 4. reserve_for, in one transaction
    existing = reservations_for(world, group, participant)
    cancelled: list[Reservation] = []
    if cancel_existing:
        if any(world.slots[r.slot_id].end_at < now for r in existing):
            raise ReservationRefused("cannot cancel past reservation", existing)
        cancelled = existing
        existing = []
    remaining = [r for r in existing if r not in cancelled]
    limit = group.max_appointments_per_participant
    if limit is not None and len(remaining) >= limit:
        raise ReservationRefused("participant has met per-participant limit", remaining)
    taken = [r for r in active_reservations(world, slot) if r not in cancelled]
    slot_max = slot_limit(slot, group)
    if slot_max is not None and len(taken) >= slot_max:
        raise ReservationRefused("all slots filled", remaining)
    if any(r.slot_id == slot.id for r in remaining):
        raise ReservationRefused("participant has already reserved this appointment", remaining)
    for r in cancelled:
        _delete_reservation(world, r, now)
    res = Reservation(
        id=world.new_event_id(),
        slot_id=slot.id,
        participant_type=participant.type,  # type: ignore[arg-type]
        participant_id=participant.id,
        made_by=user.id,
        comments=comments,
        created_at=now,
        updated_at=now,
    )
    world.add_reservation(res)
    slot.workflow_state = "locked"
    slot.updated_at = now
    return res


def _possible_participant(world: World, group: SimAppointmentGroup, pid: int) -> Participant | None:
    if group.participant_type == "Group":
        sg = world.groups.get(pid)
        if sg and sg.category_id == group.group_category_id:
            return Participant("Group", sg.id)
        return None
    user = world.users.get(pid)
    if user and any(world.role_in(user, cid) == "student" for cid in course_ids(group)):
        return Participant("User", user.id)
    return None


def _delete_reservation(world: World, res: Reservation, now: datetime) -> None:
    res.workflow_state = "deleted"
    res.updated_at = now
    slot = world.slots[res.slot_id]
    if not active_reservations(world, slot) and slot.workflow_state == "locked":
        slot.workflow_state = "active"
        slot.updated_at = now


def can_manage_reservation(world: World, user: SimUser, res: Reservation) -> bool:
    group = world.appointment_groups[world.slots[res.slot_id].group_id]
    return is_manager(world, user, group)


def owns_reservation(world: World, user: SimUser, res: Reservation) -> bool:
    if res.participant_type == "User":
        return res.participant_id == user.id
    sg = world.groups.get(res.participant_id)
    return sg is not None and user.id in sg.members


def cancel(world: World, user: SimUser, event_id: int) -> Reservation:
    """``DELETE /calendar_events/:id`` on a reservation (child event)."""
    res = world.reservations.get(event_id)
    if res is None:
        raise SimError(404, NOT_FOUND)
    manager = can_manage_reservation(world, user, res)
    if res.workflow_state == "deleted" or not (manager or owns_reservation(world, user, res)):
        raise SimError(401, UNAUTHORIZED)
    now = world.clock.now()
    if world.slots[res.slot_id].end_at < now and not manager:
        raise SimError(403, PAST_APPOINTMENT)
    _delete_reservation(world, res, now)
    return res


def delete_appointment_group(world: World, group: SimAppointmentGroup) -> None:
    now = world.clock.now()
    group.workflow_state = "deleted"
    group.updated_at = now
    for slot in slots_of(world, group):
        for res in active_reservations(world, slot):
            res.workflow_state = "deleted"
            res.updated_at = now
        slot.workflow_state = "deleted"
        slot.updated_at = now


def move_slot(world: World, slot: Slot, start: datetime, end: datetime) -> None:
    """A teacher moves a slot; its locked reservations follow (``sync_child_events``)."""
    now = world.clock.now()
    slot.start_at, slot.end_at, slot.updated_at = start, end, now
    for res in active_reservations(world, slot):
        res.updated_at = now


def validate_slots(
    pairs: list[tuple[datetime, datetime]], existing: list[Slot]
) -> dict[str, Any] | None:
    """Canvas's model validation of new slots: end before start, overlaps."""

    def err(message: str) -> dict[str, Any]:
        return {
            "errors": {
                "appointments": [{"attribute": "appointments", "type": message, "message": message}]
            }
        }

    for start, end in pairs:
        if end < start:
            return err("Appointment end time precedes start time")
    spans = sorted([(s.start_at, s.end_at) for s in existing] + pairs)
    for (s1, e1), (s2, _e2) in itertools.pairwise(spans):
        if s2 < e1 and s1 != e1:
            return err("Appointments overlap")
    return None
