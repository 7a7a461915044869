"""Pushing one target: list what changed on the server, plan, write only what changed.

Change detection costs one request when nothing changed: a sync-collection REPORT with the
stored token (RFC 6578). Servers without it (SabreDAV 1.8) or with a refused token fall back
to a PROPFIND listing of ETags. Bodies are fetched (calendar-multiget) only for items whose
ETag moved. The status of each item is saved right after its write, so a crash mid-push loses
at most the in-flight writes — and those are adopted on the next run, never duplicated
(If-None-Match: * on create, plus adoption of identical content).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from bridge import metrics
from bridge.caldav.dav import Dav, Listing, SyncTokenInvalid
from bridge.caldav.ics import fingerprint, uid_of
from bridge.caldav.planner import (
    Action,
    Adopt,
    Create,
    Delete,
    DesiredItem,
    Forget,
    Plan,
    RemoteItem,
    Resolver,
    Update,
    plan,
    resolve,
    restore_resolver,
)
from bridge.caldav.status import ItemStatus, StatusStore
from bridge.caldav.target import TargetSettings, choose_auth, discover
from bridge.errors import CalDAVConflict, CalDAVError, CalendarDataError

log = logging.getLogger("bridge.caldav")


@dataclass
class PushReport:
    target: str
    created: int = 0
    updated: int = 0
    deleted: int = 0
    adopted: int = 0
    unchanged: int = 0
    person_changed: int = 0
    person_deleted: int = 0
    conflicts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    plan: Plan | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, object]:
        data = {k: v for k, v in vars(self).items() if k != "plan"}
        if self.plan is not None:
            data["planned"] = [f"{type(a).__name__.lower()} {a.uid}" for a in self.plan.ordered()]
        return data


def href_for(uid: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", uid)[:100]
    return f"{safe}-{hashlib.sha1(uid.encode()).hexdigest()[:8]}.ics"


class Pusher:
    """Pushes into one CalDAV calendar; keeps the discovered collection and auth between runs."""

    def __init__(
        self, settings: TargetSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.collection: str | None = None
        self._auth: httpx.Auth | None = None
        self._transport = transport

    async def _connect(self, dry_run: bool) -> Dav:
        if self._auth is None:
            self._auth = await choose_auth(self.settings)
        if self.collection is None:
            self.collection, created = await discover(self.settings, create=not dry_run)
            if created:
                log.info("caldav %s: created calendar %r", self.settings.id, self.settings.calendar)
        return Dav(
            self.collection,
            self._auth,
            target=self.settings.id,
            timeout=self.settings.timeout,
            max_parallel=self.settings.max_parallel,
            transport=self._transport,
        )

    async def _listing(self, dav: Dav, store: StatusStore) -> Listing:
        token = store.sync_token(self.settings.id)
        try:
            return await dav.sync(token)
        except SyncTokenInvalid:
            if token:
                try:
                    return await dav.sync(None)
                except SyncTokenInvalid:
                    pass
            return await dav.list_all()

    async def _actual(
        self, dav: Dav, listing: Listing, status: Mapping[str, ItemStatus], report: PushReport
    ) -> dict[str, RemoteItem]:
        by_href = {s.href: s for s in status.values()}
        actual: dict[str, RemoteItem] = {}
        if not listing.complete:  # a delta: everything not mentioned is as we left it
            for s in status.values():
                actual[dav.href_path(s.href)] = RemoteItem(s.href, s.etag, s.uid)
            for href in listing.removed:
                actual.pop(href, None)
        fetch = []
        for href, etag in listing.etags.items():
            known = by_href.get(href)
            if known is not None and etag is not None and etag == known.etag:
                actual[href] = RemoteItem(href, etag, known.uid)
            else:
                fetch.append(href)
        for href, (etag, data) in (await dav.multiget(fetch)).items() if fetch else []:
            try:
                uid = uid_of(data, context=href)
            except CalendarDataError as exc:
                report.errors.append(str(exc))
                uid = None
            actual[href] = RemoteItem(href, etag, uid, data)
        return actual

    async def push(
        self,
        desired: Mapping[str, DesiredItem] | None,
        store: StatusStore,
        *,
        now: datetime,
        hidden: Mapping[str, str] | None = None,
        dry_run: bool = False,
        resolver: Resolver | None = None,
    ) -> PushReport:
        report = PushReport(self.settings.id)
        dav = await self._connect(dry_run)
        try:
            status = {
                uid: ItemStatus(s.uid, dav.href_path(s.href), s.etag, s.content_hash, s.ics)
                for uid, s in store.load(self.settings.id).items()
            }
            listing = await self._listing(dav, store)
            actual = await self._actual(dav, listing, status, report)
            result = plan(
                desired, actual, status, now, delete_past=self.settings.delete_past, hidden=hidden
            )
            report.person_changed = sum(
                1 for o in result.observations if type(o).__name__ == "PersonChanged"
            )
            report.person_deleted = len(result.observations) - report.person_changed
            result = await resolve(result, resolver or restore_resolver(hidden or {}))
            report.plan, report.unchanged = result, result.unchanged
            report.conflicts += [f"{c.uid}: {c.reason}" for c in result.conflicts]
            if dry_run:
                return report
            actions = result.ordered()
            await self._run(dav, actions, store, report)
            token = listing.token
            if token and actions and not report.errors:
                token = await self._token_after_writes(dav, store, token)
            if token and not report.errors:
                store.set_sync_token(self.settings.id, token)
            return report
        finally:
            report.requests = dav.requests
            await dav.aclose()

    async def _token_after_writes(self, dav: Dav, store: StatusStore, token: str) -> str | None:
        """A token that includes our own writes, so the next delta is relative to them.

        Some servers (Xandikos) derive tokens from content: a token taken before our writes can
        equal the state after a person undid them, and the delta would then hide the change.
        If the delta shows anything we did not write, keep the old token (the next cycle
        looks again)."""
        try:
            delta = await dav.sync(token)
        except SyncTokenInvalid:
            return None
        ours = {s.href: s.etag for s in store.load(self.settings.id).values()}
        changed = [h for h, etag in delta.etags.items() if ours.get(h, "missing") != etag]
        foreign = changed + [h for h in delta.removed if h in ours]
        return token if foreign else delta.token

    async def _run(
        self, dav: Dav, actions: list[Action], store: StatusStore, report: PushReport
    ) -> None:
        writes = [a for a in actions if not isinstance(a, Delete | Forget)]
        removals = [a for a in actions if isinstance(a, Delete | Forget)]
        for batch in (writes, removals):  # creates and updates before any delete
            await asyncio.gather(*(self._one(dav, a, store, report) for a in batch))

    async def _one(self, dav: Dav, action: Action, store: StatusStore, report: PushReport) -> None:
        target = self.settings.id
        op = type(action).__name__.lower()
        try:
            if isinstance(action, Create):
                href = dav.href_path(href_for(action.uid))
                try:
                    etag = await dav.put(href, action.ics, create=True)
                except CalDAVConflict:  # something is already there: ours from a lost run?
                    found = (await dav.multiget([href])).get(href)
                    if found is None or fingerprint(found[1]) != fingerprint(action.ics):
                        raise
                    etag = found[0]
                    report.adopted += 1
                else:
                    report.created += 1
                store.apply(
                    target,
                    [ItemStatus(action.uid, href, etag, action.content_hash, action.ics)],
                    [],
                )
            elif isinstance(action, Update):
                etag = await dav.put(action.href, action.ics, etag=action.etag)
                store.apply(
                    target,
                    [ItemStatus(action.uid, action.href, etag, action.content_hash, action.ics)],
                    [],
                )
                report.updated += 1
            elif isinstance(action, Adopt):
                store.apply(
                    target,
                    [
                        ItemStatus(
                            action.uid, action.href, action.etag, action.content_hash, action.ics
                        )
                    ],
                    [],
                )
                report.adopted += 1
            elif isinstance(action, Delete):
                await dav.delete(action.href, action.etag)
                store.apply(target, [], [action.uid])
                report.deleted += 1
            else:
                store.apply(target, [], [action.uid])
            metrics.CALDAV_OPERATIONS.labels(target, op, "ok").inc()
        except CalDAVConflict as exc:
            report.conflicts.append(f"{action.uid}: {exc} — re-read and re-planned next cycle")
            metrics.CALDAV_OPERATIONS.labels(target, op, "conflict").inc()
        except (CalDAVError, CalendarDataError) as exc:
            report.errors.append(f"{action.uid}: {exc}")
            metrics.CALDAV_OPERATIONS.labels(target, op, "error").inc()
