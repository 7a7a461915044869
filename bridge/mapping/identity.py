"""Stable, globally unique UIDs for the events calbridge makes.

A UID names the Canvas object behind the event and the Canvas instance it came from, so it
stays the same on every run and never collides across Canvas instances, or between the open-slot
event and the managed-slot event of the same slot. A re-booked reservation keeps the UID of the
booking it replaced (the caller passes that mapping), so the person's calendar event survives
the move with its UID, alarms and href.
"""

from __future__ import annotations

import re

_KINDS = {
    "conference": "conference",
    "reservation": "reservation",
    "open_slot": "slot",
    "managed_slot": "managed-slot",
}
_PARSE = re.compile(r"^canvas-(conference|reservation|slot|managed-slot)-(\d+)@(.+)$")


def uid_for(kind: str, canvas_id: int, host: str) -> str:
    return f"canvas-{_KINDS[kind]}-{canvas_id}@{host}"


def parse_uid(uid: str) -> tuple[str, int, str] | None:
    """``(kind, canvas id, host)`` of a UID calbridge made, else None."""
    match = _PARSE.match(uid)
    if match is None:
        return None
    kind = {v: k for k, v in _KINDS.items()}[match.group(1)]
    return kind, int(match.group(2)), match.group(3)
