"""One CalDAV calendar's sync: read → plan → decide → (stop here for a dry run) → execute."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import urlsplit

import httpx

from bridge.dav.boundary import CollectionGone
from bridge.dav.discovery import TargetSettings
from bridge.dav.remote import CalendarRemote, Remote, View
from bridge.errors import SafetyAbort
from bridge.mapping import CalEvent
from bridge.model.canvas import AccountSnapshot
from bridge.model.outcomes import (
    ActionReport,
    CommandOutcome,
    SafetyStop,
    StopKind,
    TargetReport,
)
from bridge.model.status import Collection, ItemStatus, StatusStore, discovery_key
from bridge.state.stops import StopState
from bridge.sync.decide import NO_CANVAS, Approval, Context, Policy, decide
from bridge.sync.execute import Ledger, execute, report_command
from bridge.sync.plan import (
    DesiredItem,
    PersonChanged,
    PersonDeleted,
    RemoteItem,
    in_order,
    plan,
)

log = logging.getLogger("bridge.dav")


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
        self,
        settings: TargetSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        remote: Remote | None = None,
    ) -> None:
        self.settings = settings
        self.remote: Remote = remote or CalendarRemote(settings, transport)

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
        settings = self.settings
        found_for = discovery_key(settings.url, settings.username, settings.calendar)
        kept = await asyncio.to_thread(store.collection, target_id)
        known = kept if kept is not None and kept.found_for == found_for else None
        await self.remote.open(create=not dry_run, known=known)
        try:
            status, view = await self._read(store, kept, found_for, dry_run)
            report.item_errors += view.errors
            ledger = writeback.ledger if writeback is not None else None
            stored = (
                await asyncio.to_thread(ledger.stops.get, target_id) if ledger is not None else None
            )
            decided = stored.state if stored is not None else None
            # A "Canvas lists nothing" stop is answered for as long as Canvas lists nothing:
            # approved, the events are deleted (again, if a delete failed); discarded, they stay
            # as they are. Either way it does not come back while the situation is the same.
            empty_answer = (
                decided
                if stored is not None
                and stored.kind == StopKind.CANVAS_EMPTY
                and decided is not StopState.HELD
                else None
            )
            canvas_empty = False
            try:
                planned = plan(
                    desired,
                    view.actual,
                    status,
                    now,
                    delete_past=self.settings.delete_past,
                    hidden=hidden,
                )
            except SafetyAbort:
                if ledger is None:
                    raise
                if empty_answer is None:
                    return await self._canvas_empty(report, status, view.actual, ledger, dry_run)
                canvas_empty = True
                planned = plan(
                    desired if empty_answer is StopState.APPROVED else None,
                    view.actual,
                    status,
                    now,
                    delete_past=self.settings.delete_past,
                    hidden=hidden,
                    allow_empty=True,
                )
            report.person_changed = sum(isinstance(o, PersonChanged) for o in planned.observations)
            report.person_deleted = sum(isinstance(o, PersonDeleted) for o in planned.observations)
            approval = Approval()
            if stored is not None and stored.kind != StopKind.CANVAS_EMPTY:
                # (an answer to "Canvas lists nothing" approves no edit of the person's)
                if decided is StopState.APPROVED:
                    approval = Approval(approved=frozenset(stored.uids))
                elif decided is StopState.DISCARDED:
                    approval = Approval(discarded=frozenset(stored.uids))
            ctx = Context(
                target_id,
                ledger.account_id if ledger is not None else "",
                writeback.snapshot if writeback is not None else None,
                writeback.events if writeback is not None else {},
                hidden,
                now,
                writeback.policy if writeback is not None else NO_CANVAS,
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
                writes, removals = in_order(decision.actions)
                report.actions += [
                    ActionReport(type(a).__name__.lower(), a.uid) for a in writes + removals
                ]
                return report
            await execute(
                decision, remote=self.remote, store=store, view=view, report=report, ledger=ledger
            )
            if stored is not None and stored.kind == StopKind.CANVAS_EMPTY and not canvas_empty:
                # Canvas lists events again, or none of ours is left on the server.
                assert ledger is not None
                await asyncio.to_thread(ledger.stops.clear, target_id)
            return report
        finally:
            report.requests = self.remote.requests
            await self.remote.close()

    async def _read(
        self, store: StatusStore, stored: Collection | None, found_for: str, dry_run: bool
    ) -> tuple[dict[str, ItemStatus], View]:
        """The status and what the server holds. A calendar no longer where it was stored
        (301/404/410) is discovered again; when it is found elsewhere, the status follows it
        (the events are looked for under the new URL) and the old sync token is dropped."""
        target_id = self.settings.id
        loaded = await asyncio.to_thread(store.load, target_id)
        token = await asyncio.to_thread(store.sync_token, target_id)
        gone = False
        try:
            status = self._status(loaded, stored)
            try:
                view = await self.remote.read(status, None if self._moved(stored) else token)
            except CollectionGone as exc:
                log.info("%s; discovering the calendar again", exc)
                gone = True
                await self.remote.rediscover(create=not dry_run)
                status = self._status(loaded, stored)
                view = await self.remote.read(status, None)
        finally:
            if not dry_run:
                await self._remember(store, stored, found_for, loaded, gone)
        return status, view

    def _moved(self, stored: Collection | None) -> bool:
        return stored is not None and stored.url != self.remote.collection

    def _status(
        self, loaded: Mapping[str, ItemStatus], stored: Collection | None
    ) -> dict[str, ItemStatus]:
        """The status with hrefs as the server's paths; after a move, under the new URL."""
        status = self.remote.normalise(loaded)
        if not self._moved(stored):
            return status
        return {
            uid: replace(s, href=self.remote.href_path(s.href.rsplit("/", 1)[-1]))
            for uid, s in status.items()
        }

    async def _remember(
        self,
        store: StatusStore,
        stored: Collection | None,
        found_for: str,
        loaded: Mapping[str, ItemStatus],
        gone: bool,
    ) -> None:
        """Keep where the calendar is; after a move, the status's new hrefs and no token."""
        url = self.remote.collection
        if url is None:
            return
        target_id = self.settings.id
        if self._moved(stored):
            log.info("caldav %s: the calendar is now at %s", target_id, urlsplit(url).path)
            moved = list(self._status(loaded, stored).values())
            await asyncio.to_thread(store.apply, target_id, moved, [])
        if self._moved(stored) or gone:
            await asyncio.to_thread(store.set_sync_token, target_id, None)
        now = Collection(url, found_for, self.remote.syncs)
        if stored != now:
            await asyncio.to_thread(store.set_collection, target_id, now)

    async def _canvas_empty(
        self,
        report: TargetReport,
        status: Mapping[str, ItemStatus],
        actual: Mapping[str, RemoteItem],
        ledger: Ledger,
        dry_run: bool,
    ) -> TargetReport:
        """Canvas suddenly lists nothing for a calendar holding our events: a glitch must not
        empty the calendar, and a real end must not leave it failing forever — so it waits
        for a person, like any safety stop, and clears itself when Canvas lists events again."""
        listed = tuple(sorted(uid for uid, s in status.items() if s.href in actual))
        stop = SafetyStop(report.target_id, 0, len(listed), listed, StopKind.CANVAS_EMPTY)
        report.stop = stop
        if not dry_run:
            await asyncio.to_thread(
                ledger.stops.hold, stop.target_id, stop.uids, 0, stop.owned, stop.kind
            )
            log.warning("%s", stop.describe())
        return report
