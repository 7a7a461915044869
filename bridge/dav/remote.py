"""One CalDAV calendar as the sync sees it: read what changed, write one action at a time.

Change detection costs one request when nothing changed: a sync-collection REPORT with the
stored token (RFC 6578). Servers without it (SabreDAV 1.8) or with a refused token fall back
to a PROPFIND listing of ETags. Bodies are fetched (calendar-multiget) only for items whose
ETag moved. Writes use preconditions: If-None-Match: * on create (an identical object left by
a crashed run is adopted, never duplicated), If-Match on update and delete.

This adapter only speaks HTTP. It does not decide anything and does not touch the state store:
:mod:`bridge.sync.execute` records each write's status right after it succeeds.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from bridge.dav.discovery import TargetSettings, choose_auth, discover
from bridge.dav.webdav import Dav, Listing, SyncTokenInvalid
from bridge.errors import CalDAVConflict, CalDAVError, CalendarDataError
from bridge.mapping.ics_reader import fingerprint, uid_of
from bridge.model.actions import Action, Adopt, Create, Delete, RemoteItem, Update
from bridge.model.outcomes import ItemError
from bridge.model.status import ItemStatus

log = logging.getLogger("bridge.dav")


def href_for(uid: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", uid)[:100]
    return f"{safe}-{hashlib.sha1(uid.encode()).hexdigest()[:8]}.ics"


@dataclass
class View:
    """What the server holds, as far as this cycle needs to know (keyed by href)."""

    actual: dict[str, RemoteItem]
    token: str | None
    complete: bool  # a full listing (not a delta)
    errors: list[ItemError] = field(default_factory=list)


@dataclass(frozen=True)
class Written:
    """The result of one action on the server."""

    action: Action
    ok: bool
    status: ItemStatus | None = None  # what to remember after a create/update/adopt
    forget: bool = False  # forget the UID (deleted)
    adopted: bool = False  # a create found our own content already there
    conflict: bool = False  # a precondition failed: re-read and re-planned next cycle
    detail: str = ""


class Remote(Protocol):
    """What the sync needs of a calendar server (:class:`CalendarRemote` over CalDAV; the
    state-machine test brings one in memory)."""

    @property
    def requests(self) -> int: ...

    async def open(self, *, create: bool) -> None: ...

    async def close(self) -> None: ...

    def href_path(self, href: str) -> str: ...

    def normalise(self, status: Mapping[str, ItemStatus]) -> dict[str, ItemStatus]: ...

    async def read(self, status: Mapping[str, ItemStatus], token: str | None) -> View: ...

    async def token_after_writes(
        self, token: str, ours: Mapping[str, str | None]
    ) -> str | None: ...

    async def write(self, action: Action) -> Written: ...


class CalendarRemote:
    """One CalDAV calendar; keeps the discovered collection and auth between cycles."""

    def __init__(
        self, settings: TargetSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.collection: str | None = None
        self._auth: httpx.Auth | None = None
        self._transport = transport
        self._dav: Dav | None = None

    @property
    def requests(self) -> int:
        return self._dav.requests if self._dav is not None else 0

    async def open(self, *, create: bool) -> None:
        if self._auth is None:
            self._auth = await choose_auth(self.settings)
        if self.collection is None:
            self.collection, created = await discover(self.settings, create=create)
            if created:
                log.info("caldav %s: created calendar %r", self.settings.id, self.settings.calendar)
        self._dav = Dav(
            self.collection,
            self._auth,
            target=self.settings.id,
            timeout=self.settings.timeout,
            max_parallel=self.settings.max_parallel,
            transport=self._transport,
        )

    async def close(self) -> None:
        if self._dav is not None:
            await self._dav.aclose()

    @property
    def dav(self) -> Dav:
        assert self._dav is not None, "open() first"
        return self._dav

    def href_path(self, href: str) -> str:
        return self.dav.href_path(href)

    def normalise(self, status: Mapping[str, ItemStatus]) -> dict[str, ItemStatus]:
        """The status with hrefs as this server's paths."""
        return {
            uid: ItemStatus(s.uid, self.href_path(s.href), s.etag, s.content_hash, s.ics)
            for uid, s in status.items()
        }

    async def _listing(self, token: str | None) -> Listing:
        try:
            return await self.dav.sync(token)
        except SyncTokenInvalid:
            if token:
                try:
                    return await self.dav.sync(None)
                except SyncTokenInvalid:
                    pass
            return await self.dav.list_all()

    async def read(self, status: Mapping[str, ItemStatus], token: str | None) -> View:
        """What changed since ``token`` (everything, without one), with bodies of what moved."""
        listing = await self._listing(token)
        by_href = {s.href: s for s in status.values()}
        view = View({}, listing.token, listing.complete)
        if not listing.complete:  # a delta: everything not mentioned is as we left it
            for s in status.values():
                view.actual[s.href] = RemoteItem(s.href, s.etag, s.uid)
            for href in listing.removed:
                view.actual.pop(href, None)
        fetch = []
        for href, etag in listing.etags.items():
            known = by_href.get(href)
            if known is not None and etag is not None and etag == known.etag:
                view.actual[href] = RemoteItem(href, etag, known.uid)
            else:
                fetch.append(href)
        for href, (etag, data) in (await self.dav.multiget(fetch)).items() if fetch else []:
            try:
                uid = uid_of(data, context=href)
            except CalendarDataError as exc:
                view.errors.append(ItemError(self.settings.id, str(exc), href))
                uid = None
            view.actual[href] = RemoteItem(href, etag, uid, data)
        return view

    async def token_after_writes(self, token: str, ours: Mapping[str, str | None]) -> str | None:
        """A token that includes our own writes, so the next delta is relative to them.

        Some servers (Xandikos) derive tokens from content: a token taken before our writes can
        equal the state after a person undid them, and the delta would then hide the change.
        If the delta shows anything we did not write, keep the old token (the next cycle
        looks again). ``ours`` maps href → the ETag we hold."""
        try:
            delta = await self.dav.sync(token)
        except SyncTokenInvalid:
            return None
        changed = [h for h, etag in delta.etags.items() if ours.get(h, "missing") != etag]
        foreign = changed + [h for h in delta.removed if h in ours]
        return token if foreign else delta.token

    async def write(self, action: Action) -> Written:
        """Carry out one create, update or delete; errors become a failed :class:`Written`."""
        try:
            if isinstance(action, Create):
                href = self.dav.href_path(href_for(action.uid))
                adopted = False
                try:
                    etag = await self.dav.put(href, action.ics, create=True)
                except CalDAVConflict:  # something is already there: ours from a lost run?
                    found = (await self.dav.multiget([href])).get(href)
                    if found is None or fingerprint(found[1]) != fingerprint(action.ics):
                        raise
                    etag, adopted = found[0], True
                status = ItemStatus(action.uid, href, etag, action.content_hash, action.ics)
                return Written(action, True, status, adopted=adopted)
            if isinstance(action, Update):
                etag = await self.dav.put(action.href, action.ics, etag=action.etag)
                status = ItemStatus(action.uid, action.href, etag, action.content_hash, action.ics)
                return Written(action, True, status)
            if isinstance(action, Adopt):
                status = ItemStatus(
                    action.uid, action.href, action.etag, action.content_hash, action.ics
                )
                return Written(action, True, status)
            if isinstance(action, Delete):
                await self.dav.delete(action.href, action.etag)
                return Written(action, True, forget=True)
            return Written(action, True, forget=True)  # Forget, Hide: bookkeeping only
        except CalDAVConflict as exc:
            return Written(action, False, conflict=True, detail=str(exc))
        except (CalDAVError, CalendarDataError) as exc:
            return Written(action, False, detail=str(exc))
