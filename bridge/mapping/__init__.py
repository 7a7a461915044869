"""Canvas objects to iCalendar: a pure core (no I/O, no clock).

``collect_events`` maps a snapshot to :class:`CalEvent` values, ``render_feed`` writes a feed
with stable versions, ``render_event_ics`` writes one event for CalDAV. The rules are in
the docstrings of :mod:`bridge.mapping.conferences` and :mod:`bridge.mapping.bookings`.
"""

from bridge.mapping.feed import (
    CollectResult,
    FeedOptions,
    RenderCache,
    RenderedFeed,
    SkippedEvent,
    collect_events,
    render_event_ics,
    render_feed,
)
from bridge.mapping.versions import EventVersion, next_versions
from bridge.model.event import CalEvent

__all__ = [
    "CalEvent",
    "CollectResult",
    "EventVersion",
    "FeedOptions",
    "RenderCache",
    "RenderedFeed",
    "SkippedEvent",
    "collect_events",
    "next_versions",
    "render_event_ics",
    "render_feed",
]
