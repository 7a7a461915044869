"""Typed results of a sync: what happened, as values — never as text parsed again.

Exit codes, ``/healthz``, metrics and log lines all read these. Human wording lives in
``describe()`` methods, so the words can change without breaking a caller.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class CommandKind(enum.StrEnum):
    CANCEL = "cancel"
    REBOOK = "rebook"
    RESERVE = "reserve"


class CommandOutcome(enum.StrEnum):
    """What became of one Canvas command in one cycle."""

    APPLIED = "applied"  # Canvas did it (now, or before a crash and verified now)
    REFUSED = "refused"  # Canvas said no; the calendar gets Canvas's version back
    FAILED = "failed"  # a definite error other than a refusal; put back as well
    UNKNOWN = "unknown"  # 5xx or reset while sending: maybe done; verified next cycle
    RATE_LIMITED = "rate_limited"  # not sent: the per-minute or daily cap is reached
    HELD = "held"  # not sent: a safety stop waits for a person
    DISCARDED = "discarded"  # a person chose to put the calendar back instead
    PLANNED = "planned"  # dry run: would be sent

    @property
    def settled(self) -> bool:
        """The person's change is fully handled (reached Canvas or was put back)."""
        return self in (self.APPLIED, self.REFUSED, self.FAILED, self.DISCARDED)


class StopKind(enum.StrEnum):
    MASS_CHANGE = "mass_change"  # many bookings vanished or moved in the calendar at once
    EMPTY_LISTING = "empty_listing"  # the calendar server suddenly lists nothing
    CANVAS_EMPTY = "canvas_empty"  # Canvas suddenly lists nothing for a calendar we fill


class AccountState(enum.StrEnum):
    OK = "ok"
    POLL_FAILED = "poll_failed"
    BUSY = "busy"  # another live process holds the account's lease


class TargetState(enum.StrEnum):
    OK = "ok"
    PENDING = "pending"  # some write-back waits (rate limit, Canvas unavailable)
    STOPPED = "stopped"  # a safety stop waits for `calbridge writebacks approve`
    FAILED = "failed"  # the calendar could not be read or written at all
    ITEM_ERRORS = "item_errors"  # some calendar objects could not be handled


@dataclass(frozen=True)
class ItemError:
    """One calendar object that could not be handled; the rest of the calendar went on."""

    target_id: str
    message: str
    href: str | None = None
    uid: str | None = None

    def describe(self) -> str:
        where = self.href or self.uid or "?"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class SafetyStop:
    """Too many of the person's bookings vanished or moved at once: no Canvas write until a
    person approves (or discards) with ``calbridge writebacks approve``."""

    target_id: str
    changed: int
    owned: int
    uids: tuple[str, ...]
    kind: StopKind = StopKind.MASS_CHANGE

    def describe(self) -> str:
        return describe_stop(self.target_id, self.kind, self.changed, self.owned)


@dataclass(frozen=True)
class CommandReport:
    """One Canvas command and its outcome, for output and the journal."""

    kind: CommandKind
    uid: str
    title: str
    why: str
    params: dict[str, int]
    outcome: CommandOutcome
    detail: str = ""
    new_reservation_id: int | None = None

    def describe(self) -> str:
        p = self.params
        if self.kind is CommandKind.CANCEL:
            what = f"cancel reservation {p['reservation_id']}"
        elif self.kind is CommandKind.REBOOK:
            what = f"rebook reservation {p['from_reservation_id']} onto slot {p['to_slot_id']}"
        else:
            what = f"reserve slot {p['slot_id']}"
        text = f"{what} {self.title!r} — {self.why}"
        if self.outcome is CommandOutcome.PLANNED:
            return text
        return f"{text} [{self.outcome}{': ' + self.detail if self.detail else ''}]"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "uid": self.uid,
            "title": self.title,
            "why": self.why,
            "params": self.params,
            "outcome": str(self.outcome),
            "detail": self.detail,
            "new_reservation_id": self.new_reservation_id,
        }


@dataclass(frozen=True)
class ActionReport:
    """One CalDAV action (create, update, delete, …) decided or done."""

    op: str
    uid: str
    ok: bool = True
    detail: str = ""

    def describe(self) -> str:
        return f"{self.op} {self.uid}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class TargetReport:
    """Everything one CalDAV calendar's sync decided and did in one cycle."""

    target_id: str
    dry_run: bool = False
    commands: list[CommandReport] = field(default_factory=list)
    actions: list[ActionReport] = field(default_factory=list)
    restored: list[tuple[str, str]] = field(default_factory=list)  # (uid, reason)
    stop: SafetyStop | None = None
    item_errors: list[ItemError] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    failure: str | None = None  # the whole target failed (unreachable, refused login, …)
    unchanged: int = 0
    person_changed: int = 0
    person_deleted: int = 0
    requests: int = 0
    token_advanced: bool = False

    def count(self, op: str) -> int:
        return sum(1 for a in self.actions if a.op == op and a.ok)

    @property
    def created(self) -> int:
        return self.count("create")

    @property
    def updated(self) -> int:
        return self.count("update")

    @property
    def deleted(self) -> int:
        return self.count("delete")

    @property
    def adopted(self) -> int:
        return self.count("adopt")

    @property
    def errors(self) -> list[str]:
        """Every error of this cycle in words: the whole target, single objects, writes."""
        out = [self.failure] if self.failure else []
        out += [e.describe() for e in self.item_errors]
        return out + [f"{a.op} {a.uid}: {a.detail}" for a in self.failed_actions if a.detail]

    @property
    def failed_actions(self) -> list[ActionReport]:
        return [a for a in self.actions if not a.ok]

    @property
    def pending(self) -> list[CommandReport]:
        return [c for c in self.commands if not c.outcome.settled and c.outcome != "planned"]

    @property
    def state(self) -> TargetState:
        if self.failure is not None:
            return TargetState.FAILED
        if self.stop is not None:
            return TargetState.STOPPED
        if self.item_errors or self.failed_actions:
            return TargetState.ITEM_ERRORS
        if self.pending:
            return TargetState.PENDING
        return TargetState.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target_id,
            "state": str(self.state),
            "dry_run": self.dry_run,
            "created": self.count("create"),
            "updated": self.count("update"),
            "deleted": self.count("delete"),
            "adopted": self.count("adopt"),
            "unchanged": self.unchanged,
            "person_changed": self.person_changed,
            "person_deleted": self.person_deleted,
            "requests": self.requests,
            "commands": [c.as_dict() for c in self.commands],
            "actions": [vars(a) for a in self.actions],
            "restored": [{"uid": u, "reason": r} for u, r in self.restored],
            "safety_stop": None
            if self.stop is None
            else {**vars(self.stop), "uids": list(self.stop.uids), "message": self.stop.describe()},
            "item_errors": [vars(e) for e in self.item_errors],
            "conflicts": self.conflicts,
            "failure": self.failure,
            "token_advanced": self.token_advanced,
        }


def describe_stop(target_id: str, kind: StopKind, changed: int, owned: int) -> str:
    """A safety stop in words, with what the person can do about it."""
    approve = f"`calbridge writebacks approve {target_id}`"
    if kind is StopKind.CANVAS_EMPTY:
        return (
            f"safety stop on {target_id}: Canvas suddenly lists nothing while calbridge owns "
            f"{owned} events in this calendar; none was deleted. It clears itself when Canvas "
            f"lists them again; run {approve} to delete them"
        )
    if kind is StopKind.EMPTY_LISTING:
        what = f"the server lists none of the {owned} events calbridge wrote"
    else:
        what = f"{changed} of {owned} bookings vanished or moved at once"
    return (
        f"safety stop on {target_id}: {what}; nothing was written to Canvas or the calendar. "
        f"Run {approve} to carry the changes to Canvas, or `--discard` to put the events back"
    )
