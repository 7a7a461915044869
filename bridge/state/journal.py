"""The write-back journal: each Canvas write-back is recorded *before* the Canvas call and
completed after it, so after a crash nothing is reserved or cancelled twice.

``begin`` commits a pending entry keyed by an idempotency key; the same key again returns the
existing entry instead of a new one. Re-booked reservations keep their calendar UID through
``aliases``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bridge.state.schema import JournalRow, ReservationAliasRow

FINAL_STATES = ("applied", "refused", "failed", "restored")


@dataclass(frozen=True)
class JournalEntry:
    id: int
    idempotency_key: str
    account_id: str
    target_id: str
    uid: str
    action: str
    params: dict[str, Any]
    state: str
    outcome: str
    created_at: datetime
    updated_at: datetime


def _entry(row: JournalRow) -> JournalEntry:
    return JournalEntry(
        row.id,
        row.idempotency_key,
        row.account_id,
        row.target_id,
        row.uid,
        row.action,
        json.loads(row.params),
        row.state,
        row.outcome,
        row.created_at,
        row.updated_at,
    )


class Journal:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def begin(
        self,
        *,
        key: str,
        account_id: str,
        target_id: str,
        uid: str,
        action: str,
        params: dict[str, Any],
    ) -> tuple[JournalEntry, bool]:
        """Record a pending write-back. Returns (entry, created); an existing key is returned as is."""
        now = datetime.now(UTC)
        try:
            with self._sessions.begin() as s:
                existing = s.scalars(
                    select(JournalRow).where(JournalRow.idempotency_key == key)
                ).first()
                if existing is not None:
                    return _entry(existing), False
                row = JournalRow(
                    idempotency_key=key,
                    account_id=account_id,
                    target_id=target_id,
                    uid=uid,
                    action=action,
                    params=json.dumps(params, sort_keys=True),
                    state="pending",
                    outcome="",
                    created_at=now,
                    updated_at=now,
                )
                s.add(row)
                s.flush()
                return _entry(row), True
        except IntegrityError:
            with self._sessions.begin() as s:
                row = s.scalars(select(JournalRow).where(JournalRow.idempotency_key == key)).one()
                return _entry(row), False

    def finish(self, entry_id: int, state: str, outcome: str) -> None:
        if state not in FINAL_STATES:
            raise ValueError(f"not a final journal state: {state}")
        with self._sessions.begin() as s:
            row = s.get(JournalRow, entry_id)
            if row is not None:
                row.state, row.outcome, row.updated_at = state, outcome[:2000], datetime.now(UTC)

    def pending(self, account_id: str | None = None) -> list[JournalEntry]:
        with self._sessions.begin() as s:
            query = select(JournalRow).where(JournalRow.state == "pending").order_by(JournalRow.id)
            if account_id is not None:
                query = query.where(JournalRow.account_id == account_id)
            return [_entry(r) for r in s.scalars(query)]

    def recent(self, limit: int = 50, target_id: str | None = None) -> list[JournalEntry]:
        with self._sessions.begin() as s:
            query = select(JournalRow).order_by(JournalRow.id.desc()).limit(limit)
            if target_id is not None:
                query = query.where(JournalRow.target_id == target_id)
            return [_entry(r) for r in s.scalars(query)]

    # --- reservation UID aliases ------------------------------------------------------------

    def set_alias(self, account_id: str, reservation_id: int, uid: str) -> None:
        with self._sessions.begin() as s:
            s.merge(
                ReservationAliasRow(account_id=account_id, reservation_id=reservation_id, uid=uid)
            )

    def aliases(self, account_id: str) -> dict[int, str]:
        with self._sessions.begin() as s:
            rows = s.scalars(
                select(ReservationAliasRow).where(ReservationAliasRow.account_id == account_id)
            )
            return {r.reservation_id: r.uid for r in rows}
