"""``stable_until``: before it, the same snapshot renders the same feed whatever the clock says
(the daemon skips an unchanged account's render only until then); a change the clock brings
(a conference going live, an event leaving the window) comes at or after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.mapping import FeedOptions, render_feed
from bridge.mapping.horizon import snapshot_times, stable_until
from bridge.model.canvas import AccountSnapshot
from tests.helpers.mapping import CASES, build
from tests.helpers.options import feed_options

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


def _horizon(snapshot: AccountSnapshot, options: FeedOptions, now: datetime) -> datetime | None:
    windows = [(options.window_past, options.window_future)]
    return stable_until(snapshot_times(snapshot), windows, now)


def _moments(now: datetime, until: datetime | None) -> list[datetime]:
    """Times from a second to two years after ``now``, and just before ``until``."""
    steps = [timedelta(seconds=1.7**k) for k in range(0, 42)]
    moments = [now + step for step in steps]
    if until is not None:
        moments += [until - timedelta(seconds=1), until - timedelta(microseconds=1)]
    return sorted(moments)


@pytest.mark.parametrize("name", sorted(CASES))
def test_nothing_changes_before_the_horizon(name: str) -> None:
    snapshot, options, now = build(CASES[name])
    assert isinstance(now, datetime)
    first = render_feed(snapshot, options, {}, now)
    until = _horizon(snapshot, options, now)
    assert until is None or until > now
    for moment in _moments(now, until):
        if until is not None and moment >= until:
            break
        again = render_feed(snapshot, options, first.versions, moment)
        assert again.ics == first.ics, f"{name}: the feed changed at {moment}, before {until}"


def _snapshot(conference: dict[str, object]) -> AccountSnapshot:
    return AccountSnapshot.model_validate(
        {
            "canvas_host": "canvas.example.edu",
            "user": {"id": 1, "name": "Alice"},
            "conferences": [conference],
            "fetched_at": NOW,
        }
    )


def test_a_conference_going_live_is_the_horizon() -> None:
    start = NOW + timedelta(hours=2)
    conference = {"id": 5, "title": "Office hour", "start_at": start, "started_at": start}
    snapshot, options = _snapshot(conference), feed_options(include=["conferences"])
    first = render_feed(snapshot, options, {}, NOW)
    until = _horizon(snapshot, options, NOW)
    assert until == start
    later = render_feed(snapshot, options, first.versions, start + timedelta(seconds=1))
    assert later.ics != first.ics  # the live prefix: a later horizon would have hidden it


def test_an_event_leaving_the_window_is_the_horizon() -> None:
    start = NOW - timedelta(days=3)
    end = start + timedelta(hours=1)
    conference = {"id": 6, "title": "Lecture", "start_at": start, "end_at": end}
    snapshot = _snapshot(conference)
    options = feed_options(include=["conferences"], window_past=timedelta(days=5))
    first = render_feed(snapshot, options, {}, NOW)
    assert len(first.events) == 1
    leaves = end + timedelta(days=5)  # the window's start passes the event's end
    after = render_feed(snapshot, options, first.versions, leaves + timedelta(seconds=1))
    assert not after.events
    until = _horizon(snapshot, options, NOW)
    assert until is not None and NOW < until <= leaves
