"""The daemon's side of the personal pages: :class:`~bridge.web.portal.PortalService` over
People, the state store, the live CalDAV check and the write-back journal.

Every change to feeds or calendars is taken in by the daemon before the method returns
(``refresh``: the people merged again, feed secrets re-read), so a rotated secret's old URL
answers 404 at once and a new calendar or an edited feed is synced within seconds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from bridge import errors
from bridge.canvas.oauth import CanvasOAuth
from bridge.config.schema import person_feed
from bridge.daemon.logs import register_secret
from bridge.daemon.people import People, target_entry
from bridge.dav.discovery import check_target
from bridge.dav.remote import CalendarRemote
from bridge.model.actions import Delete
from bridge.model.people import NewTarget, Person, PersonTarget
from bridge.state import StateStore
from bridge.state.journal import JournalEntry
from bridge.state.people import UnknownPerson
from bridge.web.portal import (
    CalendarView,
    Disconnected,
    NotYours,
    PersonPage,
    Refused,
    WritebackView,
)

log = logging.getLogger("bridge.daemon.portal")

RECENT_WRITEBACKS = 20


def _invalid(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part)
    text = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {text}" if where else text


def _writeback(entry: JournalEntry) -> WritebackView:
    p = entry.params
    if entry.action == "cancel":
        what = f"cancel reservation {p.get('reservation_id')}"
    elif entry.action == "rebook":
        what = f"move reservation {p.get('from_reservation_id')} to slot {p.get('to_slot_id')}"
    elif entry.action == "reserve":
        what = f"book slot {p.get('slot_id')}"
    else:
        what = entry.action
    outcome = str(entry.state) + (f": {entry.outcome}" if entry.outcome else "")
    return WritebackView(entry.updated_at, what, outcome)


async def _local_address(url: str) -> str | None:
    """A loopback, private, link-local or otherwise non-public address ``url``'s host resolves
    to (people must not make the daemon probe its own network); None when all are public or
    the name does not resolve (the live check then says so)."""
    host = urlsplit(url).hostname or ""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        return None
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            return str(address)
    return None


def _for_person(failure: str | None, target_id: str) -> str | None:
    """A push failure as the person reads it: without the internal calendar id that starts
    the daemon's log line (``caldav u1.c0: cannot reach …``)."""
    if failure is None:
        return None
    for prefix in (f"caldav {target_id}: ", f"{target_id}: ", "caldav: "):
        failure = failure.removeprefix(prefix)
    return failure


def _parsed(when: str | None) -> datetime | None:
    """/healthz's ISO 8601 time of the last good push, as a time the page formats."""
    if not when:
        return None
    try:
        return datetime.fromisoformat(when)
    except ValueError:
        return None


class DaemonPortal:
    """:class:`~bridge.web.portal.PortalService` for one daemon."""

    def __init__(
        self,
        people: People,
        state: StateStore,
        *,
        refresh: Callable[[], Awaitable[None]],
        target_health: Callable[[str], Mapping[str, Any] | None],
        local_calendars: bool,
    ) -> None:
        self.people = people
        self.local_calendars = local_calendars
        self.state = state
        self._refresh = refresh
        self._target_health = target_health
        self._oauth: CanvasOAuth | None = None

    def oauth(self) -> CanvasOAuth:
        if self._oauth is None:  # the client secret is read once, at the first sign-in
            self._oauth = self.people.oauth()
        return self._oauth

    # --- signing in ---------------------------------------------------------------------------

    def authorize_url(self, state: str) -> str:
        return self.oauth().authorize_url(state)

    async def sign_in(self, code: str) -> Person:
        tokens = await self.oauth().exchange(code)
        person = await asyncio.to_thread(self.people.connect, tokens)
        await self._refresh()
        return person

    # --- the page -----------------------------------------------------------------------------

    async def page(self, person_id: int) -> PersonPage | None:
        return await asyncio.to_thread(self._page, person_id)

    def _page(self, person_id: int) -> PersonPage | None:
        try:
            person = self.state.people.get(person_id)
        except UnknownPerson:
            return None
        status = self.state.account_statuses().get(person.account_id)
        last_error = None
        if (
            status is not None
            and status.last_error
            and status.last_error_at is not None
            and (status.last_success_at is None or status.last_error_at > status.last_success_at)
        ):
            last_error = status.last_error
        calendars = []
        for target in person.targets:
            health = self._target_health(target.target_id) or {}
            calendars.append(
                CalendarView(
                    target,
                    _for_person(health.get("last_error"), target.target_id),
                    _parsed(health.get("last_success")),
                )
            )
        entries = self.state.journal.recent(RECENT_WRITEBACKS, account_id=person.account_id)
        return PersonPage(
            person, last_error, tuple(calendars), tuple(_writeback(e) for e in entries)
        )

    # --- feeds --------------------------------------------------------------------------------

    async def update_feed(
        self, person_id: int, feed_id: int, include: tuple[str, ...], timezone: str | None
    ) -> None:
        try:  # the checks of a [[feeds]] entry
            person_feed(f"u{person_id}.f{feed_id}", f"u{person_id}", list(include), timezone, None)
        except ValidationError as exc:
            raise Refused(_invalid(exc)) from None
        try:
            await asyncio.to_thread(
                self.state.people.update_feed, person_id, feed_id, include, timezone
            )
        except UnknownPerson as exc:
            raise NotYours(str(exc)) from None
        await self._refresh()

    async def rotate_feed(self, person_id: int, feed_id: int) -> None:
        try:
            feed = await asyncio.to_thread(self.state.people.rotate_feed_secret, person_id, feed_id)
        except UnknownPerson as exc:
            raise NotYours(str(exc)) from None
        log.info("feed %s: secret rotated by its owner", feed.feed_id)
        await self._refresh()

    # --- calendars ----------------------------------------------------------------------------

    async def add_calendar(self, person_id: int, target: NewTarget) -> None:
        register_secret(target.password)
        account = f"u{person_id}"
        try:  # the checks of a [[caldav]] entry (https, or http to loopback; a known zone…)
            config = target_entry(f"{account}.c0", account, target)
        except ValidationError as exc:
            raise Refused(_invalid(exc)) from None
        if not self.local_calendars:
            local = await _local_address(target.url)
            if local is not None:
                raise Refused(
                    f"{urlsplit(target.url).hostname} is on this server's own network ({local}); "
                    "calendars there cannot be added here"
                )
        try:  # what `calbridge check` does: reachable, credentials accepted, calendar there
            await check_target(config.target_settings(target.password))
        except errors.BridgeError as exc:
            raise Refused(_for_person(str(exc), config.id) or "the calendar check failed") from None
        try:
            added = await asyncio.to_thread(self.state.people.add_target, person_id, target)
        except UnknownPerson as exc:
            raise NotYours(str(exc)) from None
        log.info("caldav %s: added by its owner", added.target_id)
        await self._refresh()

    async def remove_calendar(self, person_id: int, target_id: int) -> None:
        try:
            await asyncio.to_thread(self.state.people.remove_target, person_id, target_id)
        except UnknownPerson as exc:
            raise NotYours(str(exc)) from None
        log.info("caldav u%s.c%s: removed by its owner", person_id, target_id)
        await self._refresh()

    # --- disconnecting ------------------------------------------------------------------------

    async def disconnect(self, person_id: int, remove_events: bool) -> Disconnected:
        removed_events = 0
        problems: list[str] = []

        async def clean(person: Person) -> None:
            nonlocal removed_events
            for target in person.targets:
                count, problem = await self._remove_events(target)
                removed_events += count
                if problem:
                    problems.append(f"{target.calendar} ({target.url}): {problem}")

        try:
            person = await self.people.remove(
                person_id, before_delete=clean if remove_events else None
            )
        except UnknownPerson as exc:
            raise NotYours(str(exc)) from None
        await self._refresh()
        return Disconnected(len(person.feeds), len(person.targets), removed_events, tuple(problems))

    async def _remove_events(self, target: PersonTarget) -> tuple[int, str | None]:
        """Delete from the calendar every event calbridge wrote there (the state store knows
        their hrefs); anything else in the calendar is left alone."""
        key = target.target_id
        items = await asyncio.to_thread(self.state.caldav.load, key)
        if not items:
            return 0, None
        known = await asyncio.to_thread(self.state.caldav.collection, key)
        try:
            password = await asyncio.to_thread(self.state.people.target_password, target.id)
            register_secret(password)
            config = target_entry(key, f"u{target.person_id}", target)
        except (errors.BridgeError, ValidationError) as exc:
            return 0, str(exc)
        remote = CalendarRemote(config.target_settings(password))
        removed, failed = 0, []
        try:
            await remote.open(create=False, known=known)
            for item in remote.normalise(items).values():
                written = await remote.write(Delete(item.uid, item.href, None))
                if written.ok:
                    removed += 1
                else:
                    failed.append(written.detail or item.uid)
        except errors.BridgeError as exc:
            return removed, str(exc)
        finally:
            await remote.close()
        log.info("caldav %s: removed %d of calbridge's events on disconnect", key, removed)
        if failed:
            return removed, f"{len(failed)} events could not be deleted ({failed[0]})"
        return removed, None
