"""Carrying out write-backs: the CalDAV push's resolver when ``writeback = true``.

Every Canvas call goes through the journal: an entry is committed *before* the call and
finished after it. If calbridge dies in between, the entry stays pending; the next time the
same edit is seen (same idempotency key), Canvas is asked whether the change already happened
before anything is sent again — so nothing is reserved or cancelled twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge import metrics
from bridge.caldav.planner import (
    Action,
    Adopt,
    Delete,
    Forget,
    Observation,
    PersonChanged,
    PersonDeleted,
    Unowned,
    restore_resolver,
)
from bridge.calendar import CalEvent
from bridge.calendar.identity import parse_uid
from bridge.canvas.client import CanvasClient
from bridge.canvas.models import AccountSnapshot
from bridge.errors import (
    BridgeError,
    CalendarDataError,
    CanvasError,
    CanvasNotFound,
    CanvasUnavailable,
    ReservationRefused,
)
from bridge.state import StateStore
from bridge.writeback.detect import detect
from bridge.writeback.rules import (
    Cancel,
    Decision,
    Hide,
    Keep,
    Rebook,
    Reserve,
    Restore,
    decide,
    decide_copied_slot,
)

log = logging.getLogger("bridge.writeback")

REBOOKED = "rebooked-awaiting-poll"


class RateLimit:
    """At most ``per_minute`` write-backs per account; the rest wait for a later cycle."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._times: dict[str, list[float]] = {}

    def allow(self, account_id: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self._times.get(account_id, []) if now - t < 60]
        if len(recent) >= self.per_minute:
            self._times[account_id] = recent
            return False
        self._times[account_id] = [*recent, now]
        return True


@dataclass
class WritebackContext:
    account_id: str
    target_id: str
    host: str
    snapshot: AccountSnapshot
    events: Mapping[str, CalEvent]
    now: datetime
    writeback_enabled: bool
    dry_run: bool
    hidden: Mapping[str, str]
    planned: list[str] = field(default_factory=list)


class WritebackEngine:
    """A resolver for ``Pusher.push``: observations in, CalDAV actions out, Canvas in between."""

    def __init__(
        self,
        state: StateStore,
        client: Callable[[], CanvasClient],
        ctx: WritebackContext,
        limit: RateLimit,
    ) -> None:
        self.state = state
        self.client = client
        self.ctx = ctx
        self.limit = limit
        self._default = restore_resolver(ctx.hidden)

    def _restore(self, observation: Observation) -> list[Action]:
        actions = self._default(observation)
        assert isinstance(actions, list)  # the default resolver is synchronous
        return actions

    async def __call__(self, observation: Observation) -> list[Action]:
        try:
            return await self._resolve(observation)
        except CalendarDataError as exc:
            log.warning(
                "write-back %s: unreadable event from the calendar, restoring Canvas's version: %s",
                self.ctx.target_id,
                exc,
            )
            return self._restore(observation)

    async def _resolve(self, observation: Observation) -> list[Action]:
        ctx = self.ctx
        if isinstance(observation, Unowned):
            parsed = parse_uid(observation.uid)
            if parsed is None or parsed[0] != "open_slot" or parsed[2] != ctx.host:
                return []
            decision: Decision = decide_copied_slot(
                parsed[1], ctx.snapshot, writeback_enabled=ctx.writeback_enabled, now=ctx.now
            )
            if isinstance(decision, Reserve):
                done = await self._execute(
                    observation.uid, decision, fingerprint=observation.etag or ""
                )
                return [Delete(observation.uid, observation.href, observation.etag)] if done else []
            return []
        event = ctx.events.get(observation.uid)
        if event is None:  # Canvas no longer has it: nothing to write back
            return self._restore(observation)
        theirs = observation.theirs_ics if isinstance(observation, PersonChanged) else None
        ours = (
            observation.ours_ics
            if isinstance(observation, PersonChanged)
            else observation.status.ics
        )
        edit = detect(ours, theirs, context=observation.uid)
        decision = decide(
            edit,
            event,
            ctx.snapshot,
            writeback_enabled=ctx.writeback_enabled,
            target_id=ctx.target_id,
            now=ctx.now,
        )
        etag = observation.etag if isinstance(observation, PersonChanged) else "deleted"
        if isinstance(decision, Keep) and isinstance(observation, PersonChanged):
            return [
                Adopt(
                    observation.uid,
                    observation.href,
                    observation.etag,
                    observation.theirs_ics,
                    event.content_hash(),
                )
            ]
        if isinstance(decision, Hide):
            ctx.planned.append(f"hide {observation.uid}")
            if not ctx.dry_run:
                self.state.caldav.hide(ctx.target_id, observation.uid, decision.content_hash)
            return [Forget(observation.uid)]
        if isinstance(decision, Restore | Keep):
            if isinstance(decision, Restore):
                ctx.planned.append(f"restore {observation.uid}: {decision.reason}")
                log.info(
                    "write-back %s: restoring %s: %s",
                    ctx.target_id,
                    observation.uid,
                    decision.reason,
                )
            return self._restore(observation)
        done = await self._execute(observation.uid, decision, fingerprint=etag or "")
        if not done:
            return self._restore(observation) if done is False else []
        if isinstance(decision, Cancel):
            return [Forget(observation.uid)]
        assert isinstance(observation, PersonChanged)  # a Rebook comes from a moved event
        # Keep their copy (same UID and href) until the next poll brings the new reservation.
        return [
            Adopt(
                observation.uid,
                observation.href,
                observation.etag,
                observation.theirs_ics,
                REBOOKED,
            )
        ]

    async def _execute(
        self, uid: str, decision: Cancel | Rebook | Reserve, *, fingerprint: str
    ) -> bool | None:
        """True: Canvas did it. False: Canvas refused (restore). None: try again next cycle."""
        ctx = self.ctx
        action, params = _describe(decision)
        ctx.planned.append(f"{action} {uid} {params}")
        if ctx.dry_run:
            return None
        if not self.limit.allow(ctx.account_id):
            log.info(
                "write-back %s: rate limit reached; %s of %s waits for the next cycle",
                ctx.target_id,
                action,
                uid,
            )
            return None
        key = f"{ctx.target_id}|{uid}|{action}|{sorted(params.items())}|{fingerprint}"
        entry, created = self.state.journal.begin(
            key=key,
            account_id=ctx.account_id,
            target_id=ctx.target_id,
            uid=uid,
            action=action,
            params=params,
        )
        if not created and entry.state != "pending":
            return entry.state == "applied" or (None if entry.state == "failed" else False)
        async with self.client() as client:
            if not created and await _already_done(client, decision):
                self.state.journal.finish(
                    entry.id, "applied", "found done in Canvas after a restart"
                )
                self._after_success(uid, decision)
                return True
            try:
                outcome = await _call(client, decision)
            except ReservationRefused as exc:
                self.state.journal.finish(entry.id, "refused", exc.canvas_message)
                metrics.WRITEBACKS.labels(action, "refused").inc()
                log.info(
                    "write-back %s: Canvas refused to %s %s: %s; restoring",
                    ctx.target_id,
                    action,
                    uid,
                    exc.canvas_message,
                )
                return False
            except CanvasUnavailable as exc:
                metrics.WRITEBACKS.labels(action, "unknown").inc()
                log.warning(
                    "write-back %s: %s %s may or may not have reached Canvas (%s); will check next cycle",
                    ctx.target_id,
                    action,
                    uid,
                    exc,
                )
                return None
            except CanvasError as exc:
                self.state.journal.finish(entry.id, "failed", str(exc))
                metrics.WRITEBACKS.labels(action, "failed").inc()
                log.warning("write-back %s: %s %s failed: %s", ctx.target_id, action, uid, exc)
                return False
        self.state.journal.finish(entry.id, "applied", outcome)
        metrics.WRITEBACKS.labels(action, "applied").inc()
        log.info("write-back %s: %s %s: %s", ctx.target_id, action, uid, outcome)
        self._after_success(uid, decision, outcome)
        return True

    def _after_success(self, uid: str, decision: Decision, outcome: str = "") -> None:
        if isinstance(decision, Rebook) and outcome.startswith("reservation "):
            new_id = int(outcome.split()[1])
            self.state.journal.set_alias(self.ctx.account_id, new_id, uid)


def _describe(decision: Cancel | Rebook | Reserve) -> tuple[str, dict[str, Any]]:
    if isinstance(decision, Cancel):
        return "cancel", {"reservation_id": decision.reservation_id}
    if isinstance(decision, Rebook):
        return "rebook", {
            "from_reservation_id": decision.from_reservation_id,
            "to_slot_id": decision.to_slot_id,
        }
    return "reserve", {"slot_id": decision.slot_id}


async def _call(client: CanvasClient, decision: Cancel | Rebook | Reserve) -> str:
    if isinstance(decision, Cancel):
        await client.cancel_reservation(decision.reservation_id, cancel_reason=decision.reason)
        return f"cancelled reservation {decision.reservation_id}"
    if isinstance(decision, Rebook):
        made = await client.reserve(decision.to_slot_id, cancel_existing=True)
        return f"reservation {made.id} on slot {decision.to_slot_id} (was {decision.from_reservation_id})"
    made = await client.reserve(decision.slot_id)
    return f"reservation {made.id} on slot {decision.slot_id}"


async def _already_done(client: CanvasClient, decision: Cancel | Rebook | Reserve) -> bool:
    """After a crash between the journal entry and the answer: did Canvas do it?"""
    try:
        if isinstance(decision, Cancel):
            event = await client.calendar_event(decision.reservation_id)
            return event.workflow_state == "deleted"
        slot_id = decision.to_slot_id if isinstance(decision, Rebook) else decision.slot_id
        return bool((await client.calendar_event(slot_id)).reserved)
    except CanvasNotFound:
        return isinstance(decision, Cancel)
    except BridgeError:
        return False


__all__ = ["PersonDeleted", "RateLimit", "WritebackContext", "WritebackEngine"]
