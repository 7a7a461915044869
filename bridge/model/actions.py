"""What the sync planner reads and says: desired and remote items, calendar actions, observations.

Plain data shared by the planner (:mod:`bridge.sync.plan`), the decider and the CalDAV adapter
(:mod:`bridge.dav.remote`), which carries each action out. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.model.status import ItemStatus


@dataclass(frozen=True)
class DesiredItem:
    uid: str
    ics: str
    content_hash: str


@dataclass(frozen=True)
class RemoteItem:
    """An item on the server. ``ics`` is None when it is known unchanged since our status."""

    href: str
    etag: str | None
    uid: str | None = None
    ics: str | None = None


@dataclass(frozen=True)
class Create:
    uid: str
    ics: str
    content_hash: str


@dataclass(frozen=True)
class Update:
    uid: str
    href: str
    etag: str | None
    ics: str
    content_hash: str


@dataclass(frozen=True)
class Delete:
    uid: str
    href: str
    etag: str | None


@dataclass(frozen=True)
class Adopt:
    """The server already holds exactly our content (a write whose status was lost)."""

    uid: str
    href: str
    etag: str | None
    ics: str
    content_hash: str


@dataclass(frozen=True)
class Forget:
    uid: str


@dataclass(frozen=True)
class PersonChanged:
    uid: str
    href: str
    etag: str | None
    theirs_ics: str
    ours_ics: str
    desired: DesiredItem | None


@dataclass(frozen=True)
class PersonDeleted:
    uid: str
    status: ItemStatus
    desired: DesiredItem | None


@dataclass(frozen=True)
class Unowned:
    """An item calbridge did not write, newly seen (e.g. an open-slot event the person copied)."""

    uid: str
    href: str
    etag: str | None
    ics: str


@dataclass(frozen=True)
class Conflict:
    uid: str
    reason: str


@dataclass(frozen=True)
class Hide:
    """Forget a deleted conference event and keep it hidden while its content is the same."""

    uid: str
    content_hash: str


Action = Create | Update | Delete | Adopt | Forget | Hide
Observation = PersonChanged | PersonDeleted | Unowned
