"""The write-back rules: what an edit in the person's calendar means for Canvas. Pure.

| event kind   | what the person did                         | decision                              |
|--------------|---------------------------------------------|---------------------------------------|
| reservation  | deleted it                                  | Cancel in Canvas (restore if ended)   |
| reservation  | moved it onto another open slot of its group| Rebook there (reserve, cancel_existing)|
| reservation  | moved it anywhere else / made it all-day or repeat | Restore, with the reason       |
| open slot    | copied or moved it into this calendar       | Reserve that slot                     |
| conference   | deleted it                                  | Hide it until Canvas changes it       |
| conference   | moved or edited it                          | Restore                               |
| any          | edited a field Canvas owns                  | Restore (their additions are kept)    |
| any          | only added alarms, categories, colour, notes| Keep their copy                       |
| any          | write-back is off for the calendar          | Restore instead of writing to Canvas  |
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.model.canvas import AccountSnapshot, AppointmentGroup, CalendarEvent
from bridge.model.event import CalEvent
from bridge.writeback.detect import Edit, same_times


@dataclass(frozen=True)
class Cancel:
    reservation_id: int
    reason: str


@dataclass(frozen=True)
class Rebook:
    from_reservation_id: int
    to_slot_id: int
    start: datetime


@dataclass(frozen=True)
class Reserve:
    slot_id: int


@dataclass(frozen=True)
class Restore:
    reason: str


@dataclass(frozen=True)
class Hide:
    content_hash: str


@dataclass(frozen=True)
class Keep:
    pass


Decision = Cancel | Rebook | Reserve | Restore | Hide | Keep
CANCEL_REASON = "Cancelled from the person's own calendar (calbridge)"


def _group(snapshot: AccountSnapshot, group_id: int | None) -> AppointmentGroup | None:
    return next((g for g in snapshot.reservable if g.id == group_id), None)


def _slot_ended(event: CalEvent, now: datetime) -> bool:
    return isinstance(event.end, datetime) and event.end < now


def open_slot_at(group: AppointmentGroup, edit: Edit, now: datetime) -> CalendarEvent | None:
    """A slot of ``group`` starting (and ending) where the person put the event, with room."""
    for slot in group.appointments:
        if (
            not same_times(slot.start_at, edit.start)
            or slot.start_at is None
            or slot.start_at <= now
        ):
            continue
        if (
            slot.end_at is not None
            and edit.end is not None
            and edit.end != edit.start
            and not same_times(slot.end_at, edit.end)
        ):
            continue
        if slot.reserved or (slot.available_slots is not None and slot.available_slots <= 0):
            continue
        return slot
    return None


def decide(
    edit: Edit,
    event: CalEvent,
    snapshot: AccountSnapshot,
    *,
    writeback_enabled: bool,
    target_id: str,
    now: datetime,
) -> Decision:
    if edit.kind == "unchanged":
        return Keep()
    if edit.kind == "additions":
        return Keep()
    if event.kind == "conference":
        if edit.kind == "deleted":
            return Hide(event.content_hash())
        return Restore("conference times and details come from Canvas")
    if event.kind == "open_slot":
        if edit.kind in ("deleted",):
            return Keep()
        return Restore("open slots are booked by copying them into your bookings calendar")
    if event.kind != "reservation":
        return Restore("this event is managed in Canvas")
    if edit.kind == "changed":
        return Restore(f"{', '.join(f.lower() for f in edit.fields)} of a booking come from Canvas")
    if not writeback_enabled:
        return Restore(f"write-back is off for {target_id}")
    if _slot_ended(event, now):
        return Restore("the appointment has ended; Canvas does not change past bookings")
    if edit.kind == "deleted":
        return Cancel(event.canvas_id, CANCEL_REASON)
    if edit.kind == "retimed":
        if edit.fields:
            return Restore("a booking cannot repeat; Canvas books one appointment at a time")
        return Restore("a booking cannot become an all-day event")
    group = _group(snapshot, event.appointment_group_id)
    slot = open_slot_at(group, edit, now) if group is not None and edit.start is not None else None
    if slot is None or edit.start is None:
        when = edit.start.strftime("%Y-%m-%d %H:%M UTC") if edit.start else "that time"
        title = group.title if group is not None else "this appointment group"
        return Restore(f"no open slot of {title!r} at {when}")
    if slot.id == event.slot_id:
        return Keep()
    return Rebook(event.canvas_id, slot.id, edit.start)


def decide_copied_slot(
    slot_id: int, snapshot: AccountSnapshot, *, writeback_enabled: bool, now: datetime
) -> Decision:
    """An open-slot event the person copied into a calendar calbridge writes bookings into."""
    if not writeback_enabled:
        return Keep()
    for group in snapshot.reservable:
        for slot in group.appointments:
            if slot.id == slot_id:
                if slot.start_at is None or slot.start_at <= now or slot.reserved:
                    return Keep()
                return Reserve(slot_id)
    return Keep()
