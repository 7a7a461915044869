"""The write-back journal: each Canvas write-back is recorded *before* the Canvas call and
completed after it, so after a crash nothing is reserved or cancelled twice, and nothing a
person did is forgotten.

An entry is keyed by an idempotency key (the same edit gives the same key). Its states:

* ``deferred`` — decided but not sent (the rate limit was reached, or it was verified not done
  after an unknown outcome): sent when the same edit is seen again;
* ``pending`` — committed just before the Canvas call; if calbridge dies or Canvas answers
  5xx/reset, the outcome is unknown until Canvas is asked (:meth:`Journal.pending`);
* final: ``applied``, ``refused``, ``failed`` (put back), ``discarded`` (a person chose to put
  the calendar back), ``superseded`` (the person undid the edit before it was sent).

The rate limit is counted here, from ``sent_at``, in the same transaction that marks an entry
sent, so the daemon and a one-off ``calbridge sync`` share it.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bridge.state.db import READ_ONLY, serialize
from bridge.state.schema import JournalRow, ReservationAliasRow


class EntryState(enum.StrEnum):
    DEFERRED = "deferred"
    PENDING = "pending"
    APPLIED = "applied"
    REFUSED = "refused"
    FAILED = "failed"
    DISCARDED = "discarded"
    SUPERSEDED = "superseded"

    @property
    def final(self) -> bool:
        return self not in (EntryState.DEFERRED, EntryState.PENDING)


@dataclass(frozen=True)
class JournalEntry:
    id: int
    idempotency_key: str
    account_id: str
    target_id: str
    uid: str
    action: str
    params: dict[str, Any]
    state: EntryState
    outcome: str
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None
    new_reservation_id: int | None = None


@dataclass(frozen=True)
class Limits:
    per_minute: int
    per_day: int


@dataclass(frozen=True)
class Begun:
    """The answer of :meth:`Journal.begin`. ``send`` is True when the caller must call Canvas
    now; otherwise ``entry.state`` says why not (final, still pending, or rate-limited:
    ``limited`` names the cap)."""

    entry: JournalEntry
    send: bool
    limited: str | None = None


def _entry(row: JournalRow) -> JournalEntry:
    return JournalEntry(
        row.id,
        row.idempotency_key,
        row.account_id,
        row.target_id,
        row.uid,
        row.action,
        json.loads(row.params),
        EntryState(row.state),
        row.outcome,
        row.created_at,
        row.updated_at,
        row.sent_at,
        row.new_reservation_id,
    )


# built once: it is read for every feed rendered
_ALIASES = select(ReservationAliasRow.reservation_id, ReservationAliasRow.uid).where(
    ReservationAliasRow.account_id == bindparam("account_id")
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
        limits: Limits,
        now: datetime | None = None,
    ) -> Begun:
        """Find or create the entry for ``key``; if it may be sent now (new or deferred, and
        under both caps), mark it ``pending`` and sent — in one transaction. Several processes
        sharing the database begin an account's entries one at a time (the per-account lock
        also keeps the caps exact), so an entry is sent once."""
        now = now or datetime.now(UTC)
        try:
            with self._sessions.begin() as s:
                serialize(s, f"journal:{account_id}")
                row = s.scalars(
                    select(JournalRow).where(JournalRow.idempotency_key == key).with_for_update()
                ).first()
                if row is None:
                    row = JournalRow(
                        idempotency_key=key,
                        account_id=account_id,
                        target_id=target_id,
                        uid=uid,
                        action=action,
                        params=json.dumps(params, sort_keys=True),
                        state=EntryState.DEFERRED,
                        outcome="",
                        created_at=now,
                        updated_at=now,
                    )
                    s.add(row)
                elif row.state == EntryState.SUPERSEDED:  # the same edit made again
                    row.state = EntryState.DEFERRED
                if row.state != EntryState.DEFERRED:
                    return Begun(_entry(row), send=False)
                limited = self._limited(s, account_id, limits, now)
                if limited is not None:
                    row.outcome, row.updated_at = f"waiting: {limited}", now
                    s.flush()
                    return Begun(_entry(row), send=False, limited=limited)
                row.state, row.sent_at, row.updated_at = EntryState.PENDING, now, now
                row.outcome = ""
                s.flush()
                return Begun(_entry(row), send=True)
        except IntegrityError:  # another process created it first: it owns the send
            with self._sessions.begin() as s:
                row = s.scalars(select(JournalRow).where(JournalRow.idempotency_key == key)).one()
                return Begun(_entry(row), send=False)

    @staticmethod
    def _limited(s: Session, account_id: str, limits: Limits, now: datetime) -> str | None:
        def sent_since(since: datetime) -> int:
            query = select(func.count(JournalRow.id)).where(
                JournalRow.account_id == account_id, JournalRow.sent_at >= since
            )
            return int(s.scalar(query) or 0)

        if sent_since(now - timedelta(minutes=1)) >= limits.per_minute:
            return f"at most {limits.per_minute} write-backs a minute"
        if sent_since(now - timedelta(days=1)) >= limits.per_day:
            return f"at most {limits.per_day} write-backs a day"
        return None

    def finish(
        self, entry_id: int, state: EntryState, outcome: str, new_reservation_id: int | None = None
    ) -> None:
        if not state.final:
            raise ValueError(f"not a final journal state: {state}")
        with self._sessions.begin() as s:
            row = s.get(JournalRow, entry_id, with_for_update=True)
            if row is not None:
                row.state, row.outcome, row.updated_at = state, outcome[:2000], datetime.now(UTC)
                if new_reservation_id is not None:
                    row.new_reservation_id = new_reservation_id

    def note(self, entry_id: int, outcome: str) -> None:
        """Record what happened to a still-open entry (e.g. the 5xx that left it pending)."""
        with self._sessions.begin() as s:
            row = s.get(JournalRow, entry_id, with_for_update=True)
            if row is not None:
                row.outcome, row.updated_at = outcome[:2000], datetime.now(UTC)

    def reopen(self, entry_id: int, outcome: str) -> None:
        """A pending entry that Canvas says did not happen: send again when the edit is seen."""
        with self._sessions.begin() as s:
            row = s.get(JournalRow, entry_id, with_for_update=True)
            if row is not None and row.state == EntryState.PENDING:
                row.state, row.outcome, row.updated_at = (
                    EntryState.DEFERRED,
                    outcome[:2000],
                    datetime.now(UTC),
                )

    def supersede(self, target_id: str, keep: set[str]) -> int:
        """Deferred entries of ``target_id`` whose edit is no longer there (the person undid
        it before it was sent) are closed; the ones in ``keep`` stay."""
        with self._sessions.begin() as s:
            rows = s.scalars(
                select(JournalRow)
                .where(JournalRow.target_id == target_id, JournalRow.state == EntryState.DEFERRED)
                .with_for_update()
            )
            count = 0
            for row in rows:
                if row.idempotency_key not in keep:
                    row.state, row.updated_at = EntryState.SUPERSEDED, datetime.now(UTC)
                    row.outcome = "the edit was undone in the calendar before it was sent"
                    count += 1
            return count

    def open_entries(
        self, account_id: str | None = None, target_id: str | None = None
    ) -> list[JournalEntry]:
        """Entries not final yet (pending or deferred): visible in ``calbridge writebacks``."""
        with self._sessions.begin() as s:
            query = (
                select(JournalRow)
                .where(JournalRow.state.in_([EntryState.PENDING, EntryState.DEFERRED]))
                .order_by(JournalRow.id)
            )
            if account_id is not None:
                query = query.where(JournalRow.account_id == account_id)
            if target_id is not None:
                query = query.where(JournalRow.target_id == target_id)
            return [_entry(r) for r in s.scalars(query)]

    def pending(self, account_id: str | None = None) -> list[JournalEntry]:
        """Entries sent with an unknown outcome: Canvas must be asked before anything else."""
        return [e for e in self.open_entries(account_id) if e.state == EntryState.PENDING]

    def recent(
        self, limit: int = 50, target_id: str | None = None, account_id: str | None = None
    ) -> list[JournalEntry]:
        with self._sessions.begin() as s:
            query = select(JournalRow).order_by(JournalRow.id.desc()).limit(limit)
            if target_id is not None:
                query = query.where(JournalRow.target_id == target_id)
            if account_id is not None:
                query = query.where(JournalRow.account_id == account_id)
            return [_entry(r) for r in s.scalars(query)]

    # --- reservation UID aliases ------------------------------------------------------------

    def set_alias(self, account_id: str, reservation_id: int, uid: str) -> None:
        with self._sessions.begin() as s:
            serialize(s, f"alias:{account_id}:{reservation_id}")
            s.merge(
                ReservationAliasRow(account_id=account_id, reservation_id=reservation_id, uid=uid)
            )

    def aliases(self, account_id: str) -> dict[int, str]:
        with self._sessions.begin() as s:  # plain rows, no ORM objects: read every cycle
            s.connection(execution_options={READ_ONLY: True})  # no write lock taken
            rows = s.execute(_ALIASES, {"account_id": account_id})
            return {reservation_id: uid for reservation_id, uid in rows}
