"""What the personal pages need from the daemon, and the records they show.

The pages (:mod:`bridge.web.portal.routes`) know HTTP, sessions and HTML; everything else —
Canvas sign-in, the state store, the live CalDAV check, the journal — is behind
:class:`PortalService`, which the daemon implements (``bridge.daemon.portal``). Every method
that takes a ``person_id`` acts only on that person's feeds and calendars: an id of someone
else's is :class:`NotYours`, exactly like an id that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bridge.model.people import NewTarget, Person, PersonTarget


class PortalError(Exception):
    """A request the pages refuse; the message is shown to the person as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotYours(PortalError):
    """No such feed or calendar among the signed-in person's (404)."""


class Refused(PortalError):
    """Bad input, or a calendar that failed its live check (400, with the reason)."""


@dataclass(frozen=True)
class CalendarView:
    """One of the person's CalDAV calendars as the page shows it (no password)."""

    target: PersonTarget
    last_error: str | None  # the last push's error in words; None when it went well
    last_success: datetime | None  # when the last push went well, if known


@dataclass(frozen=True)
class WritebackView:
    """One recent write-back of the person's (from the journal)."""

    when: datetime
    what: str
    outcome: str


@dataclass(frozen=True)
class PersonPage:
    """Everything ``/me`` shows."""

    person: Person
    last_error: str | None  # the last failed poll in words, when it failed after the last success
    calendars: tuple[CalendarView, ...]
    writebacks: tuple[WritebackView, ...]


@dataclass(frozen=True)
class Disconnected:
    """What a disconnect did."""

    feeds: int
    calendars: int
    events_removed: int
    problems: tuple[str, ...]  # calendars whose events could not all be removed, in words


class PortalService(Protocol):
    def authorize_url(self, state: str) -> str:
        """Canvas's authorize page for the developer key, carrying ``state``."""
        ...

    async def sign_in(self, code: str) -> Person:
        """Exchange Canvas's code and connect the person (created or found). Raises
        :class:`~bridge.errors.OAuthError` (refused) or
        :class:`~bridge.errors.CanvasUnavailable`; nothing is stored then."""
        ...

    async def page(self, person_id: int) -> PersonPage | None:
        """The person's page; None when they no longer exist."""
        ...

    async def update_feed(
        self, person_id: int, feed_id: int, include: tuple[str, ...], timezone: str | None
    ) -> None: ...

    async def rotate_feed(self, person_id: int, feed_id: int) -> None:
        """A new secret; the old URL answers 404 when this returns."""
        ...

    async def add_calendar(self, person_id: int, target: NewTarget) -> None:
        """Checked live first (discovery, credentials); :class:`Refused` with the reason,
        and nothing saved, when the check fails."""
        ...

    async def remove_calendar(self, person_id: int, target_id: int) -> None: ...

    async def disconnect(self, person_id: int, remove_events: bool) -> Disconnected:
        """Revoke at Canvas, then (``remove_events``) delete the events calbridge wrote into
        the person's calendars, then delete the person, tokens, feeds and calendars. Canvas
        unreachable: :class:`~bridge.errors.CanvasUnavailable`, and nothing is deleted."""
        ...
