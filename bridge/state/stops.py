"""Safety stops: calendars whose mass change waits for a person's word.

``hold`` records (or refreshes) a stop the sync detected; ``decide`` records the person's
answer (``calbridge writebacks approve TARGET [--discard]``); the next sync reads it as an
approval and ``clear`` removes it once the changes were carried out or put back.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from bridge.state.db import serialize
from bridge.state.schema import SafetyStopRow


class StopState(enum.StrEnum):
    HELD = "held"
    APPROVED = "approved"
    DISCARDED = "discarded"


@dataclass(frozen=True)
class StoredStop:
    target_id: str
    state: StopState
    uids: tuple[str, ...]
    changed: int
    owned: int
    kind: str
    detected_at: datetime
    decided_at: datetime | None


def _stop(row: SafetyStopRow) -> StoredStop:
    return StoredStop(
        row.target_id,
        StopState(row.state),
        tuple(json.loads(row.uids)),
        row.changed,
        row.owned,
        row.kind,
        row.detected_at,
        row.decided_at,
    )


class StopStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def hold(
        self, target_id: str, uids: tuple[str, ...], changed: int, owned: int, kind: str
    ) -> None:
        """Record a stop. A person's earlier answer for a *different* set of changes no longer
        applies; the same stop seen again keeps its first detection time."""
        with self._sessions.begin() as s:
            serialize(s, f"stop:{target_id}")
            row = s.get(SafetyStopRow, target_id)
            payload = json.dumps(sorted(uids))
            if row is not None and row.state == StopState.HELD and row.uids == payload:
                return
            s.merge(
                SafetyStopRow(
                    target_id=target_id,
                    state=StopState.HELD,
                    uids=payload,
                    changed=changed,
                    owned=owned,
                    kind=kind,
                    detected_at=datetime.now(UTC),
                    decided_at=None,
                )
            )

    def get(self, target_id: str) -> StoredStop | None:
        with self._sessions.begin() as s:
            row = s.get(SafetyStopRow, target_id)
            return _stop(row) if row is not None else None

    def all(self) -> list[StoredStop]:
        with self._sessions.begin() as s:
            return [_stop(r) for r in s.scalars(select(SafetyStopRow))]

    def decide(self, target_id: str, state: StopState) -> StoredStop | None:
        """A person's answer; None when there is no stop for this target."""
        with self._sessions.begin() as s:
            serialize(s, f"stop:{target_id}")
            row = s.get(SafetyStopRow, target_id)
            if row is None:
                return None
            row.state, row.decided_at = state, datetime.now(UTC)
            return _stop(row)

    def clear(self, target_id: str) -> None:
        with self._sessions.begin() as s:
            serialize(s, f"stop:{target_id}")
            s.execute(delete(SafetyStopRow).where(SafetyStopRow.target_id == target_id))
