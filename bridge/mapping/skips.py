"""Why an event was left out of a feed: the records the daemon logs."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SkipReason(enum.StrEnum):
    """Why an event was left out. The expected ones (outside the window, no time yet) are
    logged at info; a feed cut for size is a warning."""

    OUTSIDE_WINDOW = "outside the feed's time window"
    NO_TIME = "no scheduled or actual time"
    FEED_TOO_LARGE = "feed over its size cap (Google ignores feeds over ~1 MB)"

    @property
    def expected(self) -> bool:
        return self is not SkipReason.FEED_TOO_LARGE


@dataclass(frozen=True)
class SkippedEvent:
    """An event left out of a feed, with why; the daemon logs these."""

    ref: str
    reason: SkipReason
    detail: str = ""
