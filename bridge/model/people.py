"""People who connected themselves with Canvas sign-in (institution mode), as plain records.

The state store keeps them (``bridge.state.people``), the daemon schedules them like the
accounts of the config file, the CLI and the pages show them. The records carry no credential:
the tokens and CalDAV passwords stay encrypted in the store and are asked for one at a time.

Their ids in logs, metrics, the feed URLs and the rest of the state store are derived from the
database ids: account ``u7``, its feeds ``u7.f12``, its CalDAV calendars ``u7.c3``. A config
file whose ids have that shape clashes with them (the daemon reports it and skips the person).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime

PERSON_ID = re.compile(r"^u(\d+)(?:\.[fc](\d+))?$")


class Connection(enum.StrEnum):
    """Whether a person's account is synced."""

    CONNECTED = "connected"
    DISABLED = "disabled"  # by an administrator (calbridge users disable)
    RECONNECT_NEEDED = "reconnect_needed"  # Canvas refused the refresh token; sign in again


def account_key(person_id: int) -> str:
    return f"u{person_id}"


def is_person_key(key: str) -> bool:
    """Whether ``key`` has the shape of a connected person's account, feed or calendar id."""
    return PERSON_ID.match(key) is not None


@dataclass(frozen=True)
class PersonFeed:
    """One ICS feed of a person: served at ``/feeds/<feed_id>/<secret>.ics``."""

    id: int
    person_id: int
    secret: str = field(repr=False)
    include: tuple[str, ...]
    timezone: str | None
    name: str | None
    created_at: datetime

    @property
    def feed_id(self) -> str:
        return f"{account_key(self.person_id)}.f{self.id}"


@dataclass(frozen=True)
class PersonTarget:
    """One CalDAV calendar of a person (its password stays encrypted in the store)."""

    id: int
    person_id: int
    url: str
    username: str
    calendar: str
    include: tuple[str, ...]
    timezone: str | None
    writeback: bool
    created_at: datetime

    @property
    def target_id(self) -> str:
        return f"{account_key(self.person_id)}.c{self.id}"


@dataclass(frozen=True)
class Person:
    """A Canvas user connected through OAuth2: one per Canvas host and Canvas user id."""

    id: int
    canvas_host: str
    canvas_user_id: int
    name: str
    connection: Connection
    created_at: datetime
    last_sync_at: datetime | None
    token_expires_at: datetime | None
    feeds: tuple[PersonFeed, ...] = ()
    targets: tuple[PersonTarget, ...] = ()

    @property
    def account_id(self) -> str:
        """The id the daemon, logs, metrics and the state store use for this account."""
        return account_key(self.id)

    @property
    def enabled(self) -> bool:
        return self.connection == Connection.CONNECTED


@dataclass(frozen=True)
class NewTarget:
    """A CalDAV calendar to add to a person (the password in clear, encrypted when stored)."""

    url: str
    username: str
    password: str = field(repr=False)
    calendar: str
    include: tuple[str, ...]
    timezone: str | None
    writeback: bool
