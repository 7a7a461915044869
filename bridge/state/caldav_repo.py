"""The CalDAV sync status and hidden events, persisted (implements ``StatusStore``)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from bridge.model.status import Collection, ItemStatus
from bridge.state.db import serialize
from bridge.state.schema import (
    CalDAVCollectionRow,
    CalDAVItemRow,
    CalDAVTokenRow,
    HiddenEventRow,
)


class SqlStatusStore:
    """:class:`bridge.model.status.StatusStore` in the state database."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def load(self, target_id: str) -> dict[str, ItemStatus]:
        with self._sessions.begin() as s:
            rows = s.scalars(select(CalDAVItemRow).where(CalDAVItemRow.target_id == target_id))
            return {r.uid: ItemStatus(r.uid, r.href, r.etag, r.content_hash, r.ics) for r in rows}

    def apply(self, target_id: str, upserts: list[ItemStatus], deletes: list[str]) -> None:
        with self._sessions.begin() as s:
            serialize(s, f"caldav:{target_id}")
            for item in upserts:
                s.merge(
                    CalDAVItemRow(
                        target_id=target_id,
                        uid=item.uid,
                        href=item.href,
                        etag=item.etag,
                        content_hash=item.content_hash,
                        ics=item.ics,
                    )
                )
            if deletes:
                s.execute(
                    delete(CalDAVItemRow).where(
                        CalDAVItemRow.target_id == target_id, CalDAVItemRow.uid.in_(deletes)
                    )
                )

    def sync_token(self, target_id: str) -> str | None:
        with self._sessions.begin() as s:
            row = s.get(CalDAVTokenRow, target_id)
            return row.token if row else None

    def set_sync_token(self, target_id: str, token: str | None) -> None:
        with self._sessions.begin() as s:
            serialize(s, f"caldav:{target_id}")
            s.merge(CalDAVTokenRow(target_id=target_id, token=token))

    # --- where the calendar is (discovery costs 4-6 requests; a stored URL costs none) ---------

    def collection(self, target_id: str) -> Collection | None:
        with self._sessions.begin() as s:
            row = s.get(CalDAVCollectionRow, target_id)
            return Collection(row.url, row.found_for, row.syncs) if row else None

    def set_collection(self, target_id: str, found: Collection) -> None:
        with self._sessions.begin() as s:
            serialize(s, f"caldav:{target_id}")
            s.merge(
                CalDAVCollectionRow(
                    target_id=target_id, url=found.url, found_for=found.found_for, syncs=found.syncs
                )
            )

    # --- events the person deleted that must stay hidden --------------------------------------

    def hide(self, target_id: str, uid: str, content_hash: str) -> None:
        with self._sessions.begin() as s:
            serialize(s, f"caldav:{target_id}")
            s.merge(HiddenEventRow(target_id=target_id, uid=uid, content_hash=content_hash))

    def hidden(self, target_id: str) -> dict[str, str]:
        with self._sessions.begin() as s:
            rows = s.scalars(select(HiddenEventRow).where(HiddenEventRow.target_id == target_id))
            return {r.uid: r.content_hash for r in rows}
