"""The decision to stop an account's cycle after its poll: one case per thing that forces
the full work, and the one case that skips it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bridge.daemon.skip import Inputs, Rendered, Work, decide

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
SEEN = Inputs(pages="digest-1", profile=("alice", 7), config=("account", "feed"), etags=('"e1"',))
LAST = Rendered(SEEN, stable_until=NOW + timedelta(hours=1))


def test_nothing_changed_skips() -> None:
    assert decide(LAST, SEEN, NOW, has_caldav=False, dry_run=False) is Work.SKIP
    assert Work.SKIP.skips
    forever = Rendered(SEEN, stable_until=None)  # no time in the feed moves it
    assert decide(forever, SEEN, NOW + timedelta(days=999), has_caldav=False, dry_run=False).skips


@pytest.mark.parametrize(
    ("last", "now_inputs", "now", "has_caldav", "dry_run", "reason"),
    [
        (None, SEEN, NOW, False, False, Work.FIRST),
        (LAST, SEEN, NOW, False, True, Work.DRY_RUN),
        (LAST, SEEN, NOW, True, False, Work.CALDAV),
        (LAST, replace(SEEN, pages="digest-2"), NOW, False, False, Work.CANVAS),
        (LAST, replace(SEEN, profile=("alice", 8)), NOW, False, False, Work.PROFILE),
        (LAST, replace(SEEN, config=("account", "feed*")), NOW, False, False, Work.CONFIG),
        (LAST, replace(SEEN, etags=('"e2"',)), NOW, False, False, Work.FEED),
        (LAST, replace(SEEN, etags=(None,)), NOW, False, False, Work.FEED),
        (LAST, SEEN, NOW + timedelta(hours=1), False, False, Work.CLOCK),
    ],
    ids=["first", "dry-run", "caldav", "canvas", "profile", "config", "etag", "unserved", "clock"],
)
def test_each_change_forces_the_work(
    last: Rendered | None,
    now_inputs: Inputs,
    now: datetime,
    has_caldav: bool,
    dry_run: bool,
    reason: Work,
) -> None:
    work = decide(last, now_inputs, now, has_caldav=has_caldav, dry_run=dry_run)
    assert work is reason
    assert not work.skips
