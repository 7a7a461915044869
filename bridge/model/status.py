"""What calbridge remembers about each event it wrote into a CalDAV calendar.

This is the sync *status* in vdirsyncer's sense: the third input of the planner besides what
Canvas wants (desired) and what the server holds (actual). It is plain data; the state store
(``bridge.state``) persists it, an in-memory store serves tests and ``--dry-run``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ItemStatus:
    """One event calbridge owns in one CalDAV calendar.

    ``href`` is where it lives on the server, ``etag`` the server's ETag after our last write
    (or last read), ``content_hash`` the hash of the meaningful content we last wrote (DTSTAMP,
    LAST-MODIFIED and SEQUENCE excluded), ``ics`` exactly the text we last wrote — needed to tell
    what the person changed and to keep what they added.
    """

    uid: str
    href: str
    etag: str | None
    content_hash: str
    ics: str


@dataclass(frozen=True)
class Collection:
    """Where discovery found a target's calendar, and for which settings.

    ``found_for`` is :func:`discovery_key` of the configured URL, username and calendar name:
    when any of them changes, the stored URL no longer answers the question and discovery runs
    again. The password is not part of it (a new password finds the same calendar). A server
    without sync-collection (SabreDAV 1.8) is remembered as such, so a fresh sync does not ask
    for it again before listing; rediscovery asks again."""

    url: str
    found_for: str
    syncs: bool = True  # False: it refused sync-collection, so a sync starts with a listing


def discovery_key(url: str, username: str, calendar: str) -> str:
    return hashlib.sha256("\0".join((url, username, calendar)).encode()).hexdigest()


class StatusStore(Protocol):
    """Where the sync status of every CalDAV target lives. Writes are transactional."""

    def load(self, target_id: str) -> dict[str, ItemStatus]:
        """Every item calbridge owns in this target, by UID."""
        ...

    def apply(self, target_id: str, upserts: list[ItemStatus], deletes: list[str]) -> None:
        """Record written items and forget deleted UIDs, all in one transaction."""
        ...

    def sync_token(self, target_id: str) -> str | None:
        """The last RFC 6578 sync token seen for this target, if any."""
        ...

    def set_sync_token(self, target_id: str, token: str | None) -> None:
        """Remember (or forget, with None) the sync token."""
        ...

    def hide(self, target_id: str, uid: str, content_hash: str) -> None:
        """Keep a deleted event hidden while its content stays ``content_hash``."""
        ...

    def collection(self, target_id: str) -> Collection | None:
        """The calendar URL discovery found last time, if any."""
        ...

    def set_collection(self, target_id: str, found: Collection) -> None:
        """Remember where the calendar is, so the next process need not discover it."""
        ...


class MemoryStatusStore:
    """A :class:`StatusStore` in memory, for tests and dry runs."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, ItemStatus]] = {}
        self._tokens: dict[str, str | None] = {}
        self._collections: dict[str, Collection] = {}
        self.hidden: dict[tuple[str, str], str] = {}

    def load(self, target_id: str) -> dict[str, ItemStatus]:
        return dict(self._items.get(target_id, {}))

    def apply(self, target_id: str, upserts: list[ItemStatus], deletes: list[str]) -> None:
        items = self._items.setdefault(target_id, {})
        for item in upserts:
            items[item.uid] = item
        for uid in deletes:
            items.pop(uid, None)

    def sync_token(self, target_id: str) -> str | None:
        return self._tokens.get(target_id)

    def set_sync_token(self, target_id: str, token: str | None) -> None:
        self._tokens[target_id] = token

    def hide(self, target_id: str, uid: str, content_hash: str) -> None:
        self.hidden[(target_id, uid)] = content_hash

    def collection(self, target_id: str) -> Collection | None:
        return self._collections.get(target_id)

    def set_collection(self, target_id: str, found: Collection) -> None:
        self._collections[target_id] = found
