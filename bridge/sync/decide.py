"""Decide: what the person's edits mean for Canvas and for the calendar. Pure.

Input: the :class:`~bridge.sync.plan.Plan` (Canvas's changes as CalDAV actions, the person's
edits as observations) and a :class:`Context`. Output: a :class:`Decision` — Canvas
commands, each with the CalDAV actions that follow each of its outcomes, plus the actions that
happen whatever Canvas says. Nothing here does I/O; :mod:`bridge.sync.execute` carries it out
and ``--dry-run`` prints it.

The guarantees that live here:

* **containment** — an object that cannot be read or merged becomes an :class:`ItemError`
  (and Canvas's version is put back); the rest of the calendar goes on;
* **only owned events write to Canvas**, with one exception that must be unambiguous: a copy
  of an open-slot event books the slot only with ``reserve_by_copy`` on, times equal to the
  slot's, and no organizer or attendee of someone else — and the copy itself is never
  deleted or rewritten;
* **safety stop** — when more bookings vanish or move at once than the policy allows (or the
  server suddenly lists nothing), no command is sent and no calendar write happens until a
  person approves or discards;
* **one claim per slot** — when several edits of one cycle ask for the same slot (a booking
  moved onto it and an exact copy of its event, two bookings moved onto it), only the first in
  :func:`claim_order` — rebooks before reserves, then by UID — becomes a command; a losing
  rebook is put back, a losing copy is left as the person made it and books nothing. Canvas
  gets one write for the slot, never a second one it would refuse;
* **idempotency** — every command carries a key derived from the edit it answers, so the same
  edit seen again (after a crash, a deferral) maps to the same journal entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridge.errors import CalendarDataError
from bridge.mapping import CalEvent
from bridge.mapping.ics_reader import guarded, vevent
from bridge.mapping.identity import parse_uid
from bridge.model.canvas import AccountSnapshot
from bridge.model.outcomes import CommandKind, ItemError, SafetyStop, StopKind
from bridge.sync.plan import (
    Action,
    Adopt,
    Conflict,
    Forget,
    Hide,
    Observation,
    PersonChanged,
    Plan,
    Unowned,
    restore,
)
from bridge.writeback import rules
from bridge.writeback.detect import detect, times

REBOOKED = "rebooked-awaiting-poll"  # content hash of a moved copy kept until the next poll


@dataclass(frozen=True)
class Policy:
    """The target's write-back settings, built from its config
    (:meth:`bridge.config.CalDAVConfig.writeback_policy`): no defaults here, the schema's are
    the only ones."""

    writeback: bool
    reserve_by_copy: bool
    max_changes: int  # more bookings than this vanishing or moving at once → stop
    max_fraction: float  # … or more than this share of them (when at least two)


# A calendar with no Canvas side: every edit is put back, nothing is ever sent.
NO_CANVAS = Policy(writeback=False, reserve_by_copy=False, max_changes=0, max_fraction=0.0)


@dataclass(frozen=True)
class Approval:
    """What a person said about a safety stop: carry these UIDs' changes to Canvas, or put
    them back in the calendar."""

    approved: frozenset[str] = frozenset()
    discarded: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Context:
    target_id: str
    account_id: str
    snapshot: AccountSnapshot | None  # None: no Canvas side (every edit is put back)
    events: Mapping[str, CalEvent]  # what Canvas wants in this calendar, by UID
    hidden: Mapping[str, str]
    now: datetime
    policy: Policy = NO_CANVAS
    approval: Approval = Approval()
    owned: Mapping[str, str] = field(default_factory=dict)  # UID → href of what we wrote
    listing_empty: bool = False  # a complete listing of the server held nothing at all


@dataclass(frozen=True)
class Command:
    """One Canvas write and what the calendar gets after each outcome."""

    kind: CommandKind
    uid: str
    key: str
    params: dict[str, int]
    title: str
    why: str
    on_applied: tuple[Action, ...] = ()
    on_refused: tuple[Action, ...] = ()


@dataclass
class Decision:
    target_id: str
    actions: list[Action] = field(default_factory=list)  # whatever Canvas says
    commands: list[Command] = field(default_factory=list)
    restored: list[tuple[str, str]] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    stop: SafetyStop | None = None
    unchanged: int = 0
    held: list[str] = field(default_factory=list)  # UIDs whose edits wait (not handled yet)

    @property
    def settled(self) -> bool:
        """Nothing in the decision waits for Canvas or for a person."""
        return self.stop is None and not self.commands and not self.held


def command_key(
    target_id: str, uid: str, kind: CommandKind, params: Mapping[str, int], seen: str
) -> str:
    """The idempotency key: the same edit (same object state ``seen``) gives the same key."""
    text = f"{target_id}|{uid}|{kind}|{sorted(params.items())}|{seen}"
    return hashlib.sha256(text.encode()).hexdigest()


def decide(plan: Plan, ctx: Context) -> Decision:
    decision = Decision(ctx.target_id, actions=list(plan.actions), conflicts=list(plan.conflicts))
    decision.unchanged = plan.unchanged
    for observation in plan.observations:
        try:
            _one(observation, ctx, decision)
        except CalendarDataError as exc:
            href = getattr(observation, "href", None) or ctx.owned.get(observation.uid)
            decision.errors.append(ItemError(ctx.target_id, str(exc), href, observation.uid))
            if not isinstance(observation, Unowned):
                decision.actions.extend(_safe_restore(observation, ctx))
                decision.restored.append(
                    (observation.uid, "unreadable copy: Canvas's version put back")
                )
    _safety(decision, ctx)  # counts every claim: two bookings moved at once are two moves
    if decision.stop is None:
        _one_claim_per_slot(decision)
    return decision


def _safe_restore(observation: Observation, ctx: Context) -> list[Action]:
    """Canvas's version back, with the person's additions if their copy can be merged, else
    without them (the caller has reported the object)."""
    for whole in (False, True):
        try:
            return restore(observation, ctx.hidden, whole=whole)
        except CalendarDataError:
            continue
    return []  # cannot even rebuild ours: leave the object alone


def _one(observation: Observation, ctx: Context, decision: Decision) -> None:
    if observation.uid in ctx.approval.discarded and not isinstance(observation, Unowned):
        decision.actions.extend(restore(observation, ctx.hidden))
        decision.restored.append((observation.uid, "put back: `writebacks approve --discard`"))
        return
    if isinstance(observation, Unowned):
        command = _copied_slot(observation, ctx)
        if command is not None:
            decision.commands.append(command)
        return
    event = ctx.events.get(observation.uid)
    if event is None or ctx.snapshot is None:  # Canvas no longer has it: nothing to write back
        decision.actions.extend(restore(observation, ctx.hidden))
        return
    theirs = observation.theirs_ics if isinstance(observation, PersonChanged) else None
    ours = (
        observation.ours_ics if isinstance(observation, PersonChanged) else observation.status.ics
    )
    edit = detect(ours, theirs, context=observation.uid)
    rule = rules.decide(
        edit,
        event,
        ctx.snapshot,
        writeback_enabled=ctx.policy.writeback,
        target_id=ctx.target_id,
        now=ctx.now,
    )
    if isinstance(rule, rules.Keep) and isinstance(observation, PersonChanged):
        decision.actions.append(
            Adopt(
                observation.uid,
                observation.href,
                observation.etag,
                observation.theirs_ics,
                event.content_hash(),
            )
        )
        return
    if isinstance(rule, rules.Hide):
        decision.actions.append(Hide(observation.uid, rule.content_hash))
        return
    if isinstance(rule, rules.Restore | rules.Keep | rules.Reserve):
        decision.actions.extend(restore(observation, ctx.hidden))  # may raise: reported
        if isinstance(rule, rules.Restore):
            decision.restored.append((observation.uid, rule.reason))
        return
    put_back = tuple(_safe_restore(observation, ctx))  # only if Canvas refuses
    if isinstance(rule, rules.Cancel):
        params = {"reservation_id": rule.reservation_id}
        decision.commands.append(
            Command(
                CommandKind.CANCEL,
                observation.uid,
                command_key(ctx.target_id, observation.uid, CommandKind.CANCEL, params, "deleted"),
                params,
                event.summary,
                "deleted in the calendar",
                on_applied=(Forget(observation.uid),),
                on_refused=put_back,
            )
        )
        return
    assert isinstance(observation, PersonChanged)  # a Rebook answers a moved event
    params = {"from_reservation_id": rule.from_reservation_id, "to_slot_id": rule.to_slot_id}
    when = rule.start.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    decision.commands.append(
        Command(
            CommandKind.REBOOK,
            observation.uid,
            command_key(
                ctx.target_id, observation.uid, CommandKind.REBOOK, params, observation.etag or ""
            ),
            params,
            event.summary,
            f"moved in the calendar to {when}",
            # Keep their copy (same UID and href) until the next poll brings the new booking.
            on_applied=(
                Adopt(
                    observation.uid,
                    observation.href,
                    observation.etag,
                    observation.theirs_ics,
                    REBOOKED,
                ),
            ),
            on_refused=put_back,
        )
    )


def _copied_slot(observation: Unowned, ctx: Context) -> Command | None:
    """A copy of an open-slot event books the slot only when that is unambiguous."""
    if not ctx.policy.reserve_by_copy or ctx.snapshot is None:
        return None
    parsed = parse_uid(observation.uid)
    if parsed is None or parsed[0] != "open_slot" or parsed[2] != ctx.snapshot.canvas_host:
        return None
    slot_id = parsed[1]
    rule = rules.decide_copied_slot(
        slot_id, ctx.snapshot, writeback_enabled=ctx.policy.writeback, now=ctx.now
    )
    if not isinstance(rule, rules.Reserve):
        return None
    slot = next(
        (s for g in ctx.snapshot.reservable for s in g.appointments if s.id == slot_id), None
    )
    if slot is None:
        return None
    start, end = times(observation.ics, observation.href)
    if start != slot.start_at or (slot.end_at is not None and end != slot.end_at):
        return None
    if _foreign_people(observation.ics, observation.href, ctx.snapshot.canvas_host):
        return None
    params = {"slot_id": slot_id}
    return Command(
        CommandKind.RESERVE,
        observation.uid,
        command_key(
            ctx.target_id, observation.uid, CommandKind.RESERVE, params, observation.etag or ""
        ),
        params,
        slot.title or "open slot",
        "open slot copied into the calendar",
    )


def claimed_slot(command: Command) -> int | None:
    """The slot a command books, if it books one."""
    if command.kind is CommandKind.REBOOK:
        return command.params["to_slot_id"]
    if command.kind is CommandKind.RESERVE:
        return command.params["slot_id"]
    return None


def claim_order(command: Command) -> tuple[int, str]:
    """Which of several claims on one slot wins: a booking the person moved there (it keeps
    their booking, under calbridge's own event) before a copy of the slot's event; among
    equals, the lowest UID — stated, so the same calendar always gives the same answer."""
    return (0 if command.kind is CommandKind.REBOOK else 1, command.uid)


def _one_claim_per_slot(decision: Decision) -> None:
    """One slot, one command per cycle. Every claim was decided against the same snapshot,
    where the slot was open; once the first is sent, Canvas would refuse the others as
    already reserved (and a refused rebook would be put back only after a useless write).
    So the losers get their outcome here, without a Canvas write: a moved booking is put back
    at Canvas's time, a copied slot event stays as the person made it and books nothing (the
    next cycle sees the slot taken, or open again if the winner was refused)."""
    winners: dict[int, Command] = {}
    for command in sorted(decision.commands, key=claim_order):
        slot = claimed_slot(command)
        if slot is not None and slot not in winners:
            winners[slot] = command
    kept: list[Command] = []
    for command in decision.commands:
        slot = claimed_slot(command)
        winner = winners.get(slot) if slot is not None else None
        if winner is None or winner is command:
            kept.append(command)
            continue
        if command.kind is CommandKind.REBOOK:
            decision.actions.extend(command.on_refused)
            decision.restored.append(
                (
                    command.uid,
                    f"slot {slot} is booked in this cycle by {winner.uid} "
                    f"({winner.why}); put back at Canvas's time",
                )
            )
    decision.commands = kept


def _foreign_people(ics: str, context: str, host: str) -> bool:
    """An ORGANIZER or ATTENDEE other than calbridge's own feed organizer: an invitation or
    someone else's event, which must never book anything."""

    def read() -> bool:
        event = vevent(ics, context)
        if event.get("ATTENDEE") is not None:
            return True
        organizer = event.get("ORGANIZER")
        domain = host.split(":")[0]
        return organizer is not None and str(organizer).lower() != f"mailto:no-reply@{domain}"

    return guarded(context, read)


def _is_booking(uid: str) -> bool:
    parsed = parse_uid(uid)
    return parsed is not None and parsed[0] == "reservation"


def _safety(decision: Decision, ctx: Context) -> None:
    owned_bookings = sum(1 for uid in ctx.owned if _is_booking(uid))
    changed = [
        c.uid
        for c in decision.commands
        if c.kind in (CommandKind.CANCEL, CommandKind.REBOOK) and c.uid not in ctx.approval.approved
    ]
    # A server that suddenly lists nothing would otherwise cancel every booking and hide every
    # conference; without a Canvas side (no snapshot) everything is simply put back.
    empty = (
        ctx.snapshot is not None
        and ctx.listing_empty
        and len(ctx.owned) >= 2
        and not (ctx.approval.approved or ctx.approval.discarded)
    )
    too_many = len(changed) > ctx.policy.max_changes or (
        len(changed) >= 2
        and owned_bookings
        and len(changed) / owned_bookings > ctx.policy.max_fraction
    )
    if not (empty or too_many):
        return
    if empty:
        uids = tuple(sorted(ctx.owned))
    else:
        # Raised on top of an answered stop, this one replaces it, so it names every change it
        # holds back — the answered ones too (moving, or being put back after a discard). Naming
        # only the new ones would let the two stops take turns for ever: answering the new one
        # makes the old changes count again. One answer settles them all.
        answered = ctx.approval.approved | ctx.approval.discarded
        moving = {
            c.uid for c in decision.commands if c.kind in (CommandKind.CANCEL, CommandKind.REBOOK)
        }
        put_back = {uid for uid, _why in decision.restored if uid in ctx.approval.discarded}
        uids = tuple(sorted(set(changed) | (moving & answered) | put_back))
    decision.stop = SafetyStop(
        ctx.target_id,
        changed=len(uids) if not empty else len(changed),
        owned=owned_bookings if not empty else len(ctx.owned),
        uids=uids,
        kind=StopKind.EMPTY_LISTING if empty else StopKind.MASS_CHANGE,
    )
    # Nothing is written anywhere for this calendar while the stop stands: the person's
    # edits stay as they are, visible and pending, and Canvas stays as it is.
    decision.held = [c.uid for c in decision.commands]
    decision.actions = []
