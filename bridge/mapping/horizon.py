"""Until when a rendered feed stays what it is if only the clock moves.

A feed is rendered from a snapshot *and* ``now``: its time window (``now - window_past`` to
``now + window_future``), whether a conference is live (started within the last day, not
ended), whether it has ended, whether an open slot has begun, and the years of the
VTIMEZONE block. Each of these flips only when ``now`` crosses a time of the snapshot (or an
event time derived from one: a conference's end), shifted by one of those spans, or when
the window's edges cross a new year. :func:`stable_until` is the first such moment after
``now``: before it, rendering the same snapshot with the same options gives the same bytes.
Conservative: every time in the snapshot counts, whether the mapping reads it or not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from bridge.mapping.conferences import NoTime, conference_times
from bridge.model.canvas import AccountSnapshot

LIVE_SPAN = timedelta(days=1)  # a conference is live for a day after it started (is_live)


def _times(value: object) -> Iterator[datetime]:
    """Every datetime in ``value``, walked without recursion (a generator per level cost
    ~1 ms per snapshot of 15 groups and conferences)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, datetime):
            yield item
        elif isinstance(item, BaseModel):
            stack.extend(item.__dict__.values())  # pydantic keeps exactly the fields there
        elif isinstance(item, list | tuple):
            stack.extend(item)


def snapshot_times(snapshot: AccountSnapshot) -> set[datetime]:
    """Every time the mapping could compare with ``now``: each time in the snapshot (but
    when it was fetched) and each conference's derived end."""
    times: set[datetime] = set()
    for part in (snapshot.user, snapshot.conferences, snapshot.reservable, snapshot.manageable):
        times.update(_times(part))
    for conf in snapshot.conferences:
        with contextlib.suppress(NoTime):
            times.update(conference_times(conf)[:2])
    return times


def _next_new_year(moment: datetime) -> datetime:
    return datetime(moment.year + 1, 1, 1, tzinfo=UTC)


def stable_until(
    times: Iterable[datetime], windows: Iterable[tuple[timedelta, timedelta]], now: datetime
) -> datetime | None:
    """The first moment after ``now`` at which a feed with one of these ``(window_past,
    window_future)`` windows, rendered from a snapshot holding ``times``
    (:func:`snapshot_times`), could differ from its render at ``now``; None if never."""
    windows = list(windows)
    shifts = {timedelta(0), LIVE_SPAN}
    first: datetime | None = None
    for past, future in windows:
        shifts.update((past, -future))
        for edge in (
            _next_new_year(now - past) + past,
            _next_new_year(now + future) - future,
        ):
            if edge > now and (first is None or edge < first):
                first = edge
    for moment in times:
        for shift in shifts:
            try:
                edge = moment + shift
            except OverflowError:  # year 1 or 9999: never reached
                continue
            if edge > now and (first is None or edge < first):
                first = edge
    return first
