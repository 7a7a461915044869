"""A crash between the journal entry and Canvas's answer: the next run asks Canvas and does not
repeat the write-back (counted at the simulator); on SQLite and on PostgreSQL (``state_url``)."""

from __future__ import annotations

from bridge.canvas.client import CanvasClient
from bridge.canvas.writes import ClientWrites
from bridge.model.outcomes import CommandKind, CommandOutcome
from bridge.state import open_state
from bridge.state.journal import EntryState, Limits
from bridge.sync.decide import Command, command_key
from bridge.sync.execute import Ledger, redrive, run_command
from tests.helpers.options import canvas_client
from tests.helpers.sim import Sim


async def test_pending_cancel_that_canvas_already_did_is_not_repeated(
    live_sim: Sim, state_url: str
) -> None:
    world = live_sim.world
    alice = world.user_by_token(live_sim.tokens["alice"])
    assert alice is not None
    res = next(
        r
        for r in world.reservations.values()
        if r.participant_id == alice.id and r.comments == "Question about recursion depth"
    )
    state = open_state(state_url)

    def client() -> CanvasClient:
        return canvas_client(live_sim.url, live_sim.tokens["alice"], backoff_base=0.01)

    ledger = Ledger("alice", state.journal, state.stops, ClientWrites(client), Limits(10, 100))
    params = {"reservation_id": res.id}
    command = Command(
        CommandKind.CANCEL,
        "uid",
        command_key("phone", "uid", CommandKind.CANCEL, params, "deleted"),
        params,
        "Office hours",
        "deleted in the calendar",
    )
    # first run: the journal entry is committed, Canvas cancels, then calbridge dies before
    # recording the answer
    begun = state.journal.begin(
        key=command.key,
        account_id="alice",
        target_id="phone",
        uid="uid",
        action="cancel",
        params=params,
        limits=ledger.limits,
    )
    assert begun.send
    async with client() as c:
        await c.cancel_reservation(res.id)
    world.stats.reset()
    # the next cycle starts by asking Canvas about every pending entry, whatever the calendar says
    assert await redrive(ledger) == [(command.key, True)]
    assert world.stats.by_route.get("DELETE /api/v1/calendar_events/:id", 0) == 0
    assert world.stats.by_route["GET /api/v1/calendar_events/:id"] == 1  # it asked instead
    assert state.journal.recent()[0].state == EntryState.APPLIED and state.journal.pending() == []
    # the same edit seen again: the finished entry answers without any request
    world.stats.reset()
    report = await run_command(command, "phone", ledger)
    assert report.outcome is CommandOutcome.APPLIED
    assert world.stats.total == 0
    state.journal.set_alias("alice", 1050, "canvas-reservation-1013@x")
    assert state.journal.aliases("alice") == {1050: "canvas-reservation-1013@x"}
