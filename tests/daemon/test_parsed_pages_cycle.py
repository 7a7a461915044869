"""The daemon's cycle hands its render the last poll's objects for unchanged Canvas pages.

The real cycle (:class:`Syncer`) against the simulator over loopback HTTP, an account with 250
appointment groups (pages of 100, 100 and 50): after one group of the last page changes, the
render builds the keys of that page's groups only — unless the account sets
``keep_parsed_pages = false``, when it compares every group. The feed is right either way.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from bridge.config import settings_from
from bridge.daemon.cycle import Syncer
from bridge.mapping import feed
from bridge.mapping.bookings import reservation_key
from bridge.model.canvas import AppointmentGroup
from bridge.simulator.app import create_app
from bridge.simulator.sample import bulk_world
from bridge.simulator.server import serve_in_thread
from bridge.state import open_state
from bridge.web.served import ServedFeeds
from tests.helpers.sim import SAMPLE_NOW


@pytest.mark.parametrize(("keep", "keys_after_the_change"), [(True, 50), (False, 250)])
async def test_a_changed_page_renders_again_only_its_own_groups(
    keep: bool,
    keys_after_the_change: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys: list[int] = []

    def counted(group: AppointmentGroup) -> tuple[object, ...]:
        keys.append(group.id)
        return reservation_key(group)

    monkeypatch.setattr(feed, "reservation_key", counted)
    world, tokens = bulk_world(users=1, groups_per_user=250, conferences_per_user=2, now=SAMPLE_NOW)
    monkeypatch.setenv("TOKEN_BIG", tokens[0])
    served = ServedFeeds()
    with serve_in_thread(create_app(world)) as server:
        settings = settings_from(
            {
                "state": {"url": f"sqlite:///{tmp_path / 'state.sqlite3'}"},
                "accounts": [
                    {
                        "id": "big",
                        "canvas_url": server.url,
                        "token_env": "TOKEN_BIG",
                        "keep_parsed_pages": keep,
                    }
                ],
                "feeds": [{"id": "big", "account": "big", "include": ["reservations"]}],
            }
        )
        state = open_state(settings.state.url or "")

        def clock() -> datetime:
            return SAMPLE_NOW

        syncer = Syncer(settings, state, served, clock=clock)
        try:
            account = settings.accounts[0]
            assert (await syncer.sync_account(account)).ok
            assert len(keys) == 250
            before = served.get("big")
            last = max(world.appointment_groups.values(), key=lambda g: g.id)
            last.title = "Slots renamed"
            keys.clear()
            assert (await syncer.sync_account(account)).ok
            after = served.get("big")
        finally:
            await syncer.aclose()
            state.close()
    assert len(keys) == keys_after_the_change
    assert before is not None and after is not None
    assert b"Slots renamed" in after.body and b"Slots renamed" not in before.body
    assert after.event_count == before.event_count > 0
