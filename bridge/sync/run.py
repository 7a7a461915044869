"""One CalDAV calendar's sync: read → plan → decide → (stop here for a dry run) → execute."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import httpx

from bridge.caldav.remote import CalendarRemote
from bridge.caldav.status import StatusStore
from bridge.caldav.target import TargetSettings
from bridge.calendar import CalEvent
from bridge.canvas.models import AccountSnapshot
from bridge.errors import BridgeError
from bridge.state.stops import StopState
from bridge.sync.decide import Approval, Context, Policy, decide
from bridge.sync.execute import Ledger, execute, ordered, report_command
from bridge.sync.outcomes import ActionReport, CommandOutcome, TargetReport
from bridge.sync.plan import DesiredItem, PersonChanged, PersonDeleted, plan

log = logging.getLogger("bridge.caldav")


@dataclass
class Writeback:
    """The Canvas side of one calendar's sync: what Canvas said, the target's policy, and
    where commands go (``ledger``)."""

    snapshot: AccountSnapshot
    events: Mapping[str, CalEvent]
    policy: Policy
    ledger: Ledger | None = None


class CalendarSync:
    """Syncs one CalDAV calendar; keeps the discovered collection between cycles."""

    def __init__(
        self, settings: TargetSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.remote = CalendarRemote(settings, transport)

    @property
    def collection(self) -> str | None:
        return self.remote.collection

    async def run(
        self,
        desired: Mapping[str, DesiredItem] | None,
        store: StatusStore,
        *,
        now: datetime,
        hidden: Mapping[str, str] | None = None,
        dry_run: bool = False,
        writeback: Writeback | None = None,
    ) -> TargetReport:
        """One cycle. Errors of the whole calendar (unreachable, refused login, a safety abort)
        are raised as BridgeError; errors of single objects are in the report."""
        target_id = self.settings.id
        hidden = hidden or {}
        report = TargetReport(target_id, dry_run=dry_run)
        await self.remote.open(create=not dry_run)
        try:
            status = self.remote.normalise(await asyncio.to_thread(store.load, target_id))
            token = await asyncio.to_thread(store.sync_token, target_id)
            view = await self.remote.read(status, token)
            report.item_errors += view.errors
            planned = plan(
                desired,
                view.actual,
                status,
                now,
                delete_past=self.settings.delete_past,
                hidden=hidden,
            )
            report.person_changed = sum(isinstance(o, PersonChanged) for o in planned.observations)
            report.person_deleted = sum(isinstance(o, PersonDeleted) for o in planned.observations)
            approval = Approval()
            ledger = writeback.ledger if writeback is not None else None
            if ledger is not None:
                stored = await asyncio.to_thread(ledger.stops.get, target_id)
                if stored is not None and stored.state is StopState.APPROVED:
                    approval = Approval(approved=frozenset(stored.uids))
                elif stored is not None and stored.state is StopState.DISCARDED:
                    approval = Approval(discarded=frozenset(stored.uids))
            ctx = Context(
                target_id,
                ledger.account_id if ledger is not None else "",
                writeback.snapshot if writeback is not None else None,
                writeback.events if writeback is not None else {},
                hidden,
                now,
                writeback.policy if writeback is not None else Policy(writeback=False),
                approval,
                owned={uid: s.href for uid, s in status.items()},
                listing_empty=not view.actual and bool(status),
            )
            decision = decide(planned, ctx)
            report.unchanged = decision.unchanged
            report.restored += decision.restored
            report.item_errors += decision.errors
            report.conflicts += [f"{c.uid}: {c.reason}" for c in decision.conflicts]
            if dry_run:
                report.stop = decision.stop
                outcome = CommandOutcome.HELD if decision.stop else CommandOutcome.PLANNED
                report.commands += [report_command(c, outcome) for c in decision.commands]
                writes, removals = ordered(decision.actions)
                report.actions += [
                    ActionReport(type(a).__name__.lower(), a.uid) for a in writes + removals
                ]
                return report
            await execute(
                decision, remote=self.remote, store=store, view=view, report=report, ledger=ledger
            )
            return report
        except BridgeError:
            raise
        finally:
            report.requests = self.remote.requests
            await self.remote.close()
