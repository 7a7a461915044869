"""What one CalDAV calendar should hold: the snapshot's events, each rendered as one object.

The CalDAV counterpart of :func:`~bridge.mapping.feed.render_feed`: the same events and the
same versions (SEQUENCE, DTSTAMP), each as its own VCALENDAR, keyed by UID — the ``desired``
side of :func:`bridge.sync.plan.plan`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from bridge.mapping.feed import FeedOptions, collect_events, render_event_ics
from bridge.mapping.versions import EventVersion, next_versions
from bridge.model.actions import DesiredItem
from bridge.model.canvas import AccountSnapshot
from bridge.model.event import CalEvent


@dataclass(frozen=True)
class CalendarItems:
    desired: dict[str, DesiredItem]  # by UID: the ICS we want on the server, and its hash
    versions: dict[str, EventVersion]  # saved after a successful push
    events: dict[str, CalEvent]  # by UID: what write-back compares a person's edit against


def calendar_items(
    snapshot: AccountSnapshot,
    options: FeedOptions,
    previous: Mapping[str, EventVersion],
    now: datetime,
) -> CalendarItems:
    collected = collect_events(snapshot, options, now)
    versions = next_versions(collected.events, previous, now)
    desired = {
        e.uid: DesiredItem(
            e.uid, render_event_ics(e, versions[e.uid], options, now), e.content_hash()
        )
        for e in collected.events
    }
    return CalendarItems(desired, versions, {e.uid: e for e in collected.events})
