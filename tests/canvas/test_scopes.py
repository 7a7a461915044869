"""The scope list is exact: a poll and every write-back, on a token granted only those scopes,
get no 401, and each scope is used."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from bridge.canvas.client import CanvasClient
from bridge.canvas.oauth import CanvasOAuth
from bridge.canvas.poller import poll_account
from bridge.canvas.scopes import required_scopes
from bridge.canvas.token_auth import RefreshingAuth
from bridge.canvas.writes import ClientWrites
from bridge.model.outcomes import CommandKind, CommandOutcome
from bridge.simulator.sample import SAMPLE_CLIENT_ID
from tests.helpers.cli import calbridge
from tests.helpers.oauth_flow import options, sign_in
from tests.helpers.options import canvas_client, poll_options
from tests.helpers.sim import Sim


def test_calbridge_oauth_scopes_prints_the_list() -> None:
    out = calbridge("oauth", "scopes")
    assert out.returncode == 0 and out.stdout.split("\n")[:-1] == list(required_scopes())
    as_json = calbridge("oauth", "scopes", "--json")
    assert json.loads(as_json.stdout) == list(required_scopes())
    assert all(
        s.startswith(("url:GET|/api/v1/", "url:POST|/api/v1/", "url:DELETE|/api/v1/"))
        for s in required_scopes()
    )


async def test_poll_and_write_back_need_exactly_these_scopes(sim: Sim) -> None:
    sim.world.oauth.keys[SAMPLE_CLIENT_ID].scopes = list(required_scopes())
    oauth = CanvasOAuth(options(sim, scopes=required_scopes()))
    auth = RefreshingAuth(await sign_in(oauth), oauth.refresh, leeway=timedelta(minutes=5))
    assert sim.world.oauth.grants[0].scopes == list(required_scopes())

    @asynccontextmanager
    async def client() -> AsyncIterator[CanvasClient]:
        async with canvas_client(sim.url, auth, backoff_base=0.01) as c:
            yield c

    async with client() as c:
        snapshot = await poll_account(
            c, "canvas.sim", poll_options(conference_contexts=["course_1", "group_1"])
        )
    assert snapshot.user.name == "Alice Liddell" and snapshot.conferences

    office = [s.id for s in sim.world.slots.values() if s.group_id == 1][:4]
    writes = ClientWrites(client)
    rebooked = await writes.send(CommandKind.REBOOK, {"to_slot_id": office[0]}, "calendar edit")
    assert rebooked.outcome is CommandOutcome.APPLIED, rebooked.detail
    assert rebooked.new_reservation_id is not None
    assert await writes.verify(CommandKind.REBOOK, {"to_slot_id": office[0]}) is True
    cancel = {"reservation_id": rebooked.new_reservation_id}
    cancelled = await writes.send(CommandKind.CANCEL, cancel, "deleted in calendar")
    assert cancelled.outcome is CommandOutcome.APPLIED, cancelled.detail
    assert await writes.verify(CommandKind.CANCEL, cancel) is True
    reserved = await writes.send(CommandKind.RESERVE, {"slot_id": office[3]}, "copied")
    assert reserved.outcome is CommandOutcome.APPLIED, reserved.detail

    assert sim.world.stats.by_status.get(401, 0) == 0
    assert set(sim.world.stats.by_scope) == set(required_scopes())  # none missing, none unused
