"""Event versions: SEQUENCE, DTSTAMP and LAST-MODIFIED that move only on real change.

Google updates an imported event only when its SEQUENCE grows; a DTSTAMP that moves on every
render changes the bytes (and the ETag) of an unchanged feed. So each event's version is kept
between renders and bumped only when its content hash changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from bridge.model.event import CalEvent, EventVersion

__all__ = ["EventVersion", "next_version", "next_versions"]


def next_version(
    event_hash: str, uid: str, previous: EventVersion | None, now: datetime
) -> EventVersion:
    now = now.replace(microsecond=0)
    if previous is None:
        return EventVersion(uid, event_hash, 0, now, now)
    if previous.content_hash == event_hash:
        return previous
    return EventVersion(uid, event_hash, previous.sequence + 1, now, now)


def next_versions(
    events: Iterable[CalEvent], previous: Mapping[str, EventVersion], now: datetime
) -> dict[str, EventVersion]:
    """The version of every event now; unchanged events keep their previous version as is.

    Events that disappeared are dropped; if one comes back its SEQUENCE restarts above nothing
    we remember, which is why callers keep versions per scope for as long as they can.
    """
    now = now.replace(microsecond=0)
    out: dict[str, EventVersion] = {}
    for e in events:
        uid, digest, before = e.uid, e.content_hash(), previous.get(e.uid)
        if before is not None and before.content_hash == digest:
            out[uid] = before  # the common case of a re-render: nothing to build
        elif before is None:
            out[uid] = EventVersion(uid, digest, 0, now, now)
        else:
            out[uid] = EventVersion(uid, digest, before.sequence + 1, now, now)
    return out
