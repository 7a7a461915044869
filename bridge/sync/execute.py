"""Execute: the one step with I/O. Canvas commands through the journal, then CalDAV actions,
then — only if everything was completely handled — the sync token.

Order and its reasons:

1. A safety stop writes nothing: it is recorded for ``calbridge writebacks approve`` and the
   person's edits stay as they are.
2. Each Canvas command is committed to the journal as *pending* before it is sent (the
   journal also applies the shared rate limit). Its outcome picks the CalDAV actions that
   follow: applied → forget/adopt, refused or failed → put Canvas's version back, unknown or
   rate-limited → nothing yet.
3. CalDAV actions: creates and updates before deletes; each item's status is saved right after
   its write, so a crash loses at most the writes in flight (adopted next time).
4. The sync token advances only when every command is settled and every action succeeded.
   Otherwise the next delta shows the same edits again, so a put-off write-back is retried,
   never lost.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bridge import metrics
from bridge.canvas.writes import CanvasWrites
from bridge.dav.remote import Remote, View, Written
from bridge.model.outcomes import (
    ActionReport,
    CommandKind,
    CommandOutcome,
    CommandReport,
    StopKind,
    TargetReport,
)
from bridge.model.status import StatusStore
from bridge.state.journal import EntryState, Journal, Limits
from bridge.state.stops import StopState, StopStore
from bridge.sync.decide import Command, Decision
from bridge.sync.plan import Action, Hide, in_order
from bridge.writeback.rules import CANCEL_REASON

log = logging.getLogger("bridge.writeback")

_FROM_ENTRY = {
    EntryState.APPLIED: CommandOutcome.APPLIED,
    EntryState.REFUSED: CommandOutcome.REFUSED,
    EntryState.FAILED: CommandOutcome.FAILED,
    EntryState.DISCARDED: CommandOutcome.DISCARDED,
    EntryState.PENDING: CommandOutcome.UNKNOWN,
    EntryState.DEFERRED: CommandOutcome.RATE_LIMITED,
}
_TO_ENTRY = {outcome: state for state, outcome in _FROM_ENTRY.items() if state.final}


@dataclass
class Ledger:
    """Where the Canvas side of execution is recorded: the journal, the safety stops, the
    Canvas writes themselves and the shared rate limits."""

    account_id: str
    journal: Journal
    stops: StopStore
    writes: CanvasWrites
    limits: Limits


def report_command(
    command: Command, outcome: CommandOutcome, detail: str = "", new_id: int | None = None
) -> CommandReport:
    return CommandReport(
        command.kind,
        command.uid,
        command.title,
        command.why,
        dict(command.params),
        outcome,
        detail,
        new_id,
    )


async def run_command(command: Command, target_id: str, ledger: Ledger) -> CommandReport:
    """Send one command at most once, through the journal."""
    journal = ledger.journal
    begun = await asyncio.to_thread(
        lambda: journal.begin(
            key=command.key,
            account_id=ledger.account_id,
            target_id=target_id,
            uid=command.uid,
            action=str(command.kind),
            params=dict(command.params),
            limits=ledger.limits,
        )
    )
    entry = begun.entry
    if not begun.send:
        outcome = _FROM_ENTRY[entry.state]
        detail = begun.limited or entry.outcome
        if outcome is CommandOutcome.UNKNOWN:
            detail = "sent earlier; Canvas has not confirmed it yet"
        if outcome is CommandOutcome.RATE_LIMITED:
            log.info(
                "write-back %s: %s of %s waits: %s", target_id, command.kind, command.uid, detail
            )
        return report_command(command, outcome, detail, entry.new_reservation_id)
    result = await ledger.writes.send(command.kind, command.params, CANCEL_REASON)
    metrics.WRITEBACKS.labels(str(command.kind), str(result.outcome)).inc()
    if result.outcome is CommandOutcome.UNKNOWN:
        await asyncio.to_thread(journal.note, entry.id, f"outcome unknown: {result.detail}")
        log.warning(
            "write-back %s: %s %s may or may not have reached Canvas (%s); Canvas is asked next cycle",
            target_id,
            command.kind,
            command.uid,
            result.detail,
        )
        return report_command(command, result.outcome, result.detail)
    state = _TO_ENTRY[result.outcome]
    await asyncio.to_thread(
        journal.finish, entry.id, state, result.detail, result.new_reservation_id
    )
    if (
        result.outcome is CommandOutcome.APPLIED
        and result.new_reservation_id is not None
        and command.kind == "rebook"
    ):
        await asyncio.to_thread(
            journal.set_alias, ledger.account_id, result.new_reservation_id, command.uid
        )
    level = logging.INFO if result.outcome is CommandOutcome.APPLIED else logging.WARNING
    log.log(
        level,
        "write-back %s: %s %s: %s (%s)",
        target_id,
        command.kind,
        command.uid,
        result.outcome,
        result.detail,
    )
    return report_command(command, result.outcome, result.detail, result.new_reservation_id)


async def _write_and_record(
    remote: Remote, action: Action, store: StatusStore, target_id: str, report: TargetReport
) -> Written:
    written = await remote.write(action)
    op = type(action).__name__.lower()
    if written.ok:
        if isinstance(action, Hide):
            await asyncio.to_thread(store.hide, target_id, action.uid, action.content_hash)
        if written.status is not None:
            await asyncio.to_thread(store.apply, target_id, [written.status], [])
        elif written.forget:
            await asyncio.to_thread(store.apply, target_id, [], [action.uid])
        report.actions.append(ActionReport("adopt" if written.adopted else op, action.uid))
        metrics.CALDAV_OPERATIONS.labels(target_id, op, "ok").inc()
    elif written.conflict:
        report.conflicts.append(
            f"{action.uid}: {written.detail} — re-read and re-planned next cycle"
        )
        report.actions.append(ActionReport(op, action.uid, ok=False, detail=written.detail))
        metrics.CALDAV_OPERATIONS.labels(target_id, op, "conflict").inc()
    else:
        report.actions.append(ActionReport(op, action.uid, ok=False, detail=written.detail))
        metrics.CALDAV_OPERATIONS.labels(target_id, op, "error").inc()
    return written


async def execute(
    decision: Decision,
    *,
    remote: Remote,
    store: StatusStore,
    view: View,
    report: TargetReport,
    ledger: Ledger | None,
) -> None:
    target_id = decision.target_id
    if decision.stop is not None:
        stop = decision.stop
        report.stop = stop
        report.commands += [report_command(c, CommandOutcome.HELD) for c in decision.commands]
        if ledger is not None:
            await asyncio.to_thread(
                ledger.stops.hold,
                target_id,
                stop.uids,
                stop.changed,
                stop.owned,
                stop.kind,
            )
        metrics.SAFETY_STOPS.labels(target_id).set(1)
        log.warning("%s", stop.describe())
        return
    metrics.SAFETY_STOPS.labels(target_id).set(0)
    follow: list[Action] = []
    for command in decision.commands:
        if ledger is None:  # no Canvas side (tests of the CalDAV contract): put back
            report.commands.append(report_command(command, CommandOutcome.REFUSED, "no write-back"))
            follow += command.on_refused
            continue
        result = await run_command(command, target_id, ledger)
        report.commands.append(result)
        if result.outcome is CommandOutcome.APPLIED:
            follow += command.on_applied
        elif result.outcome in (CommandOutcome.REFUSED, CommandOutcome.FAILED):
            follow += command.on_refused
    writes, removals = in_order([*decision.actions, *follow])
    results: list[Written] = []
    for batch in (writes, removals):  # creates and updates before any delete
        results += await asyncio.gather(
            *(_write_and_record(remote, a, store, target_id, report) for a in batch)
        )
    settled = all(c.outcome.settled for c in report.commands) and not decision.held
    clean = all(w.ok for w in results) and not view.errors
    if ledger is not None:
        keys = {c.key for c in decision.commands}
        await asyncio.to_thread(ledger.journal.supersede, target_id, keys)
        stored = await asyncio.to_thread(ledger.stops.get, target_id)
        if (
            stored is not None
            and stored.kind != StopKind.CANVAS_EMPTY  # cleared by the run when Canvas lists again
            and (settled or stored.state is StopState.HELD)
        ):
            await asyncio.to_thread(ledger.stops.clear, target_id)
    if not (settled and clean and view.token):
        return
    token: str | None = view.token
    if results and token:
        ours = {s.href: s.etag for s in (await asyncio.to_thread(store.load, target_id)).values()}
        token = await remote.token_after_writes(
            token, {remote.href_path(h): e for h, e in ours.items()}
        )
    if token:
        await asyncio.to_thread(store.set_sync_token, target_id, token)
        report.token_advanced = True


async def redrive(ledger: Ledger) -> list[tuple[str, bool | None]]:
    """At the start of every cycle, whatever the calendar's delta says: ask Canvas about every
    write-back whose outcome is unknown. Done → applied; not done → sent again when the edit is
    still there (deferred); Canvas cannot tell → stays pending."""
    answers = []
    for entry in await asyncio.to_thread(ledger.journal.pending, ledger.account_id):
        done = await ledger.writes.verify(CommandKind(entry.action), entry.params)
        if done is True:
            await asyncio.to_thread(
                ledger.journal.finish,
                entry.id,
                EntryState.APPLIED,
                "found done in Canvas after an unknown outcome",
            )
            log.info(
                "write-back %s: %s %s was done in Canvas", entry.target_id, entry.action, entry.uid
            )
        elif done is False:
            await asyncio.to_thread(
                ledger.journal.reopen,
                entry.id,
                "not done in Canvas; sent again if the edit is still there",
            )
        answers.append((entry.idempotency_key, done))
    return answers
