"""Scheduler bookings as calendar events: the viewer's reservations, open slots, managed slots.

* **Reservations**: one event per reservation the viewer holds (``reserved_times``, plus
  group-signup reservations seen as the viewer's own child events), titled like the appointment
  group, with its description, location, link and the viewer's comments.
* **Open slots** (optional): future slots the viewer could book — free time
  (TRANSP:TRANSPARENT, STATUS:TENTATIVE) with the places left.
* **Managed slots** (optional, for instructors): every slot of the groups they manage, with who
  booked it and their comments — only as far as Canvas showed them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from operator import attrgetter

from bridge.mapping.identity import uid_for
from bridge.mapping.text import checked_uri, html_to_text
from bridge.model.canvas import AppointmentGroup, CalendarEvent
from bridge.model.event import CalEvent

# The render cache keys a group's events on what its mapping reads, as plain tuples: exact, and
# a fraction of serialising the whole group (which was most of a re-render).
# tests/mapping/test_render_cache.py checks each mapping reads nothing its key leaves out.


_group_text = attrgetter(
    "id", "title", "description", "location_name", "location_address", "html_url"
)


# Attribute tuples built in C (operator.attrgetter), not by a Python expression per slot: the
# keys are rebuilt for every group on every render, and were most of a re-render.
_TIME = attrgetter("id", "start_at", "end_at")
_SLOT = attrgetter("id", "start_at", "end_at", "reserve_comments")
_CHILDREN = attrgetter("child_events")
_OWN = attrgetter("id", "own_reservation")


def reservation_key(group: AppointmentGroup) -> tuple[object, ...]:
    """Everything :func:`reservation_events` reads of ``group``."""
    slots = group.appointments
    children = (
        tuple(
            (index, tuple(map(_OWN, slot.child_events or ())))
            for index, slot in enumerate(slots)
            if slot.child_events
        )
        if any(map(_CHILDREN, slots))
        else ()
    )
    return (
        _group_text(group),
        tuple(group.context_codes),
        tuple(map(_TIME, group.reserved_times)),
        tuple(map(_SLOT, slots)),
        children,
    )


def managed_key(group: AppointmentGroup) -> tuple[object, ...]:
    """Everything :func:`managed_slot_events` reads of ``group``."""
    return (
        _group_text(group),
        group.participants_per_appointment,
        tuple(
            (
                s.id,
                s.start_at,
                s.end_at,
                s.child_events_count,
                s.participants_per_appointment,
                tuple(
                    (
                        c.comments,
                        c.user.name if c.user else None,
                        c.group.name if c.group else None,
                    )
                    for c in s.child_events or ()
                ),
            )
            for s in group.appointments
        ),
    )


def _location(group: AppointmentGroup) -> str:
    return ", ".join(p for p in (group.location_name, group.location_address) if p)


def _link(group: AppointmentGroup) -> str | None:
    """The group's Canvas page, if it is a plain http(s) URL (a hostile one is left out)."""
    return checked_uri(group.html_url, f"appointment group {group.id}", "html_url")


def _description(group: AppointmentGroup, *extra: str) -> str:
    parts = [html_to_text(group.description), *extra]
    link = _link(group)
    if link:
        parts.append(f"In Canvas: {link}")
    return "\n\n".join(p for p in parts if p)


def _slot_at(
    group: AppointmentGroup, start: datetime | None, end: datetime | None
) -> CalendarEvent | None:
    for slot in group.appointments:
        if slot.start_at == start and slot.end_at == end:
            return slot
    return None


def _reservations(
    group: AppointmentGroup,
) -> dict[int, tuple[datetime, datetime, CalendarEvent | None]]:
    found: dict[int, tuple[datetime, datetime, CalendarEvent | None]] = {}
    for t in group.reserved_times:
        if t.start_at is not None:
            found[t.id] = (
                t.start_at,
                t.end_at or t.start_at,
                _slot_at(group, t.start_at, t.end_at),
            )
    for slot in group.appointments:
        for child in slot.child_events or []:
            if child.own_reservation and child.id not in found and slot.start_at is not None:
                found[child.id] = (slot.start_at, slot.end_at or slot.start_at, slot)
    return found


def reservation_events(
    group: AppointmentGroup, host: str, uids: Mapping[int, str]
) -> list[CalEvent]:
    events = []
    for res_id, (start, end, slot) in sorted(_reservations(group).items()):
        comments = slot.reserve_comments if slot and slot.reserve_comments else ""
        events.append(
            CalEvent(
                uid=uids.get(res_id) or uid_for("reservation", res_id, host),
                kind="reservation",
                summary=group.title or "Appointment",
                start=start,
                end=end,
                description=_description(group, f"Your note: {comments}" if comments else ""),
                location=_location(group),
                url=_link(group),
                categories=("Canvas", "Appointment"),
                canvas_id=res_id,
                slot_id=slot.id if slot else None,
                appointment_group_id=group.id,
                context_code=group.context_codes[0] if group.context_codes else None,
            )
        )
    return events


def open_slot_events(group: AppointmentGroup, host: str, now: datetime) -> list[CalEvent]:
    events = []
    for slot in group.appointments:
        if slot.start_at is None or slot.start_at <= now or slot.reserved:
            continue
        if slot.available_slots is not None and slot.available_slots <= 0:
            continue
        places = (
            "Open"
            if slot.available_slots is None
            else f"{slot.available_slots} place{'s' if slot.available_slots != 1 else ''} left"
        )
        events.append(
            CalEvent(
                uid=uid_for("open_slot", slot.id, host),
                kind="open_slot",
                summary=f"Open slot: {group.title}",
                start=slot.start_at,
                end=slot.end_at or slot.start_at,
                description=_description(
                    group,
                    f"{places}. Book it in Canvas, or copy this event into your bookings calendar.",
                ),
                location=_location(group),
                url=_link(group),
                status="TENTATIVE",
                transparent=True,
                categories=("Canvas", "Open slot"),
                canvas_id=slot.id,
                slot_id=slot.id,
                appointment_group_id=group.id,
            )
        )
    return events


def _who(child: CalendarEvent) -> str:
    name = child.user.name if child.user else (child.group.name if child.group else "someone")
    return f"• {name}" + (f": {child.comments}" if child.comments else "")


def managed_slot_events(group: AppointmentGroup, host: str) -> list[CalEvent]:
    events = []
    for slot in group.appointments:
        if slot.start_at is None:
            continue
        children = slot.child_events or ()
        booked = slot.child_events_count if slot.child_events_count is not None else len(children)
        limit = slot.participants_per_appointment or group.participants_per_appointment
        count = f"{booked}/{limit} booked" if limit else f"{booked} booked"
        who = "\n".join(_who(c) for c in children)
        events.append(
            CalEvent(
                uid=uid_for("managed_slot", slot.id, host),
                kind="managed_slot",
                summary=f"{group.title} ({count})",
                start=slot.start_at,
                end=slot.end_at or slot.start_at,
                description=_description(
                    group, f"Booked by:\n{who}" if who else "Nobody has booked this slot yet."
                ),
                location=_location(group),
                url=_link(group),
                transparent=booked == 0,
                categories=("Canvas", "Office hours"),
                canvas_id=slot.id,
                slot_id=slot.id,
                appointment_group_id=group.id,
            )
        )
    return events
