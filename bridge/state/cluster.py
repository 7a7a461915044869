"""Cluster mode's rows: when each account is due, its last sync and replica; the replicas.

The dispatcher (one at a time across the replicas, see :mod:`bridge.daemon.cluster`) claims
the due accounts in one transaction, moving each one's ``due_at`` a poll interval on, so an
account is handed out once per interval however many replicas look. The job records how its
sync ended and which replica ran it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bridge.state.schema import ClusterReplicaRow, ClusterScheduleRow

Sessions = Callable[[], AbstractContextManager[Session]]


def account_lock_key(account_id: str) -> int:
    """The PostgreSQL advisory lock number of an account (64-bit signed, the same in every
    process): replicas' jobs and one-off ``calbridge sync`` runs exclude each other with it."""
    digest = hashlib.sha256(f"calbridge:account:{account_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class Scheduled:
    account_id: str
    due_at: datetime
    dispatched_at: datetime | None
    last_sync_at: datetime | None
    last_sync_by: str | None
    last_outcome: str | None


@dataclass(frozen=True)
class Replica:
    name: str
    listen: str
    worker_id: int | None
    started_at: datetime
    seen_at: datetime


@dataclass(frozen=True)
class Due:
    """An account handed to a job: ``due_at`` is when it was due (for the lag)."""

    account_id: str
    due_at: datetime


class ClusterStore:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def claim_due(
        self,
        now: datetime,
        next_due: Mapping[str, Callable[[datetime], datetime]],
        in_flight: Collection[str],
    ) -> list[Due]:
        """The accounts of ``next_due`` that are due at ``now`` (or have no row yet), each
        moved on to ``next_due[id](now)`` in the same transaction (rows locked while it runs:
        two dispatchers never claim one account twice). An account whose last claim has not
        finished yet is not claimed again while its job waits in the queue or runs
        (``in_flight``: the accounts with such a job); a claim whose job is gone without
        recording its end (its replica died before queueing it, or the job failed for good)
        is claimed again as soon as the account is due — at the next dispatch, not after a
        timeout. Rows of accounts no longer listed are deleted."""
        claimed: list[Due] = []
        busy = set(in_flight)
        with self._sessions() as s:
            known = set(s.scalars(select(ClusterScheduleRow.account_id)))
            gone = known - next_due.keys()
            if gone:
                s.execute(delete(ClusterScheduleRow).where(ClusterScheduleRow.account_id.in_(gone)))
            for account_id in sorted(next_due.keys() - known):
                s.add(
                    ClusterScheduleRow(
                        account_id=account_id,
                        due_at=next_due[account_id](now),
                        dispatched_at=now,
                    )
                )
                claimed.append(Due(account_id, now))
            due = s.scalars(
                select(ClusterScheduleRow)
                .where(ClusterScheduleRow.due_at <= now)
                .order_by(ClusterScheduleRow.due_at)
                .with_for_update(skip_locked=True)
            )
            for row in due:
                advance = next_due.get(row.account_id)
                if advance is None:
                    continue
                claimed_at = row.dispatched_at
                finished = row.last_sync_at is not None and (
                    claimed_at is None or row.last_sync_at >= claimed_at
                )
                if claimed_at is not None and not finished and row.account_id in busy:
                    continue  # its job is queued or running: one at a time
                claimed.append(Due(row.account_id, row.due_at))
                row.due_at, row.dispatched_at = advance(now), now
        return claimed

    def unclaim(self, account_id: str, due_at: datetime) -> None:
        """Give an account back (its job could not be queued): due again at ``due_at``."""
        with self._sessions() as s:
            row = s.get(ClusterScheduleRow, account_id, with_for_update=True)
            if row is not None:
                row.due_at = due_at

    def due_now(self, account_ids: list[str], now: datetime) -> None:
        """These accounts are due at once (their feeds or calendars changed)."""
        with self._sessions() as s:
            for row in s.scalars(
                select(ClusterScheduleRow)
                .where(ClusterScheduleRow.account_id.in_(account_ids))
                .with_for_update()
            ):
                row.due_at = min(row.due_at, now)

    def postpone(self, account_id: str, due_at: datetime) -> None:
        """Back off after failures: the account is next due no sooner than ``due_at``."""
        with self._sessions() as s:
            row = s.get(ClusterScheduleRow, account_id, with_for_update=True)
            if row is not None and row.due_at < due_at:
                row.due_at = due_at

    def record_sync(
        self, account_id: str, at: datetime, replica: str, outcome: str, next_due: datetime
    ) -> None:
        """How the account's sync ended, on which replica, and when it is next due (one
        UPDATE; nothing when the account left the schedule while it ran)."""
        with self._sessions() as s:
            s.execute(
                update(ClusterScheduleRow)
                .where(ClusterScheduleRow.account_id == account_id)
                .values(
                    last_sync_at=at, last_sync_by=replica, last_outcome=outcome, due_at=next_due
                )
            )

    def schedule(self) -> dict[str, Scheduled]:
        with self._sessions() as s:
            return {
                r.account_id: Scheduled(
                    r.account_id,
                    r.due_at,
                    r.dispatched_at,
                    r.last_sync_at,
                    r.last_sync_by,
                    r.last_outcome,
                )
                for r in s.scalars(select(ClusterScheduleRow))
            }

    # --- replicas -------------------------------------------------------------------------------

    def replica_seen(
        self, name: str, listen: str, worker_id: int | None, started_at: datetime, now: datetime
    ) -> None:
        with self._sessions() as s:
            row = s.get(ClusterReplicaRow, name, with_for_update=True)
            if row is None:
                s.add(
                    ClusterReplicaRow(
                        name=name,
                        listen=listen,
                        worker_id=worker_id,
                        started_at=started_at,
                        seen_at=now,
                    )
                )
            else:
                row.listen, row.worker_id, row.seen_at = listen, worker_id, now

    def replica_gone(self, name: str) -> None:
        with self._sessions() as s:
            s.execute(delete(ClusterReplicaRow).where(ClusterReplicaRow.name == name))

    def forget_replicas(self, unseen_since: datetime) -> int:
        """Drop the replicas not seen since then (killed ones); how many."""
        with self._sessions() as s:
            result = s.execute(
                delete(ClusterReplicaRow).where(ClusterReplicaRow.seen_at < unseen_since)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def replicas(self) -> Iterator[Replica]:
        with self._sessions() as s:
            rows = list(s.scalars(select(ClusterReplicaRow).order_by(ClusterReplicaRow.name)))
        for r in rows:
            yield Replica(r.name, r.listen, r.worker_id, r.started_at, r.seen_at)
