"""A crash between the journal entry and Canvas's answer: the next run asks Canvas and does not
repeat the write-back (counted at the simulator)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bridge.canvas.client import CanvasClient
from bridge.canvas.models import AccountSnapshot
from bridge.state import open_state
from bridge.writeback.engine import RateLimit, WritebackContext, WritebackEngine
from bridge.writeback.rules import Cancel
from tests.conftest import Sim


async def test_pending_cancel_that_canvas_already_did_is_not_repeated(
    live_sim: Sim, tmp_path: Path
) -> None:
    world = live_sim.world
    alice = world.user_by_token(live_sim.tokens["alice"])
    assert alice is not None
    res = next(
        r
        for r in world.reservations.values()
        if r.participant_id == alice.id and r.comments == "Question about recursion depth"
    )
    state = open_state(f"sqlite:///{tmp_path / 's.sqlite3'}")
    ctx = WritebackContext(
        "alice",
        "phone",
        "h",
        AccountSnapshot.model_validate(
            {"canvas_host": "h", "fetched_at": datetime.now(UTC), "user": {"id": alice.id}}
        ),
        {},
        datetime.now(UTC),
        True,
        False,
        {},
    )

    def client() -> CanvasClient:
        return CanvasClient(live_sim.url, live_sim.tokens["alice"], backoff_base=0.01)

    engine = WritebackEngine(state, client, ctx, RateLimit(10))
    decision = Cancel(res.id, "from my phone")
    # first run: the journal entry is written, Canvas cancels, then calbridge dies before finishing
    key_fingerprint = "deleted"
    _entry, created = state.journal.begin(
        key=f"phone|uid|cancel|{sorted({'reservation_id': res.id}.items())}|{key_fingerprint}",
        account_id="alice",
        target_id="phone",
        uid="uid",
        action="cancel",
        params={"reservation_id": res.id},
    )
    assert created
    async with client() as c:
        await c.cancel_reservation(res.id)
    world.stats.reset()
    # second run sees the same edit again
    done = await engine._execute("uid", decision, fingerprint=key_fingerprint)
    assert done is True
    assert (
        world.stats.by_route.get("DELETE /api/v1/calendar_events/:id", 0) == 0
    )  # not cancelled twice
    assert world.stats.by_route["GET /api/v1/calendar_events/:id"] == 1  # it asked instead
    assert state.journal.recent()[0].state == "applied" and state.journal.pending() == []
    # and a third time: the finished entry answers without any request
    world.stats.reset()
    assert await engine._execute("uid", decision, fingerprint=key_fingerprint) is True
    assert world.stats.total == 0
