"""Write-back end to end: the Canvas simulator, a real CalDAV server (Radicale and Xandikos), the
real sync cycle, and edits made the way phones make them (raw PUTs with TZID-local times,
Apple-shaped bodies, raw DELETEs)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import icalendar
import pytest

from bridge.config import settings_from
from bridge.daemon.cycle import Syncer
from bridge.model.outcomes import CommandKind, CommandOutcome, TargetReport
from bridge.state import StateStore, open_state
from bridge.web.served import ServedFeeds
from tests.helpers.clients import ClientFile, catalogue
from tests.helpers.servers import Server, radicale, xandikos
from tests.helpers.sim import Sim


@dataclass
class Setup:
    sim: Sim
    server: Server
    state: StateStore
    syncer: Syncer

    async def sync(self) -> TargetReport:
        report = await self.sync_reporting()
        assert not report.errors, report.errors
        return report

    async def sync_reporting(self) -> TargetReport:
        """One cycle that may report errors of single objects (the report says which)."""
        result = await self.syncer.sync_account(self.syncer.settings.accounts[0])
        assert result.ok, result.error
        return result.targets[0]

    def items(self) -> dict[str, tuple[str, str]]:
        """uid → (href, ics) of everything on the server."""
        status = self.state.caldav.load("phone")
        out = {}
        collection = next(iter(status.values())).href.rsplit("/", 1)[0] + "/"
        base = httpx.URL(self.server.url)
        listing = httpx.request(
            "PROPFIND",
            base.join(collection),
            headers={"Depth": "1", "Content-Type": "application/xml"},
            content='<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>',
        )
        import xml.etree.ElementTree as ET

        for node in ET.fromstring(listing.content).iter("{DAV:}href"):
            href = node.text or ""
            if href.endswith(".ics"):
                ics = httpx.get(base.join(href)).text
                out[str(icalendar.Calendar.from_ical(ics).walk("VEVENT")[0]["UID"])] = (href, ics)
        return out

    def put(self, href: str, ics: str | bytes) -> None:
        r = self.put_as_app(href, ics)
        assert r.status_code == 204, r.text  # replaces what calbridge wrote

    def put_as_app(self, href: str, ics: str | bytes) -> httpx.Response:
        """PUT the bytes as a calendar app sends them; the server's answer, whatever it is."""
        return httpx.put(
            httpx.URL(self.server.url).join(href),
            content=ics,
            headers={"Content-Type": "text/calendar"},
        )

    def etag(self, href: str) -> str:
        return httpx.get(httpx.URL(self.server.url).join(href)).headers["etag"]

    def delete(self, href: str) -> None:
        answer = httpx.delete(httpx.URL(self.server.url).join(href)).status_code
        assert answer == {"radicale": 200, "xandikos": 204}[self.server.name]


@pytest.fixture(params=["radicale", "xandikos"])
def setup(
    request: pytest.FixtureRequest, live_sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:
    start = {"radicale": radicale, "xandikos": xandikos}[request.param]
    monkeypatch.setenv("ALICE_TOKEN", live_sim.tokens["alice"])
    monkeypatch.setenv("DAV_PW", "dav-secret")
    writeback = request.node.get_closest_marker("writeback_off") is None
    with start(tmp_path / "dav") as server:
        settings = settings_from(
            {
                "state": {"url": f"sqlite:///{tmp_path / 'state.sqlite3'}"},
                "accounts": [
                    {"id": "alice", "canvas_url": live_sim.url, "token_env": "ALICE_TOKEN"}
                ],
                "caldav": [
                    {
                        "id": "phone",
                        "account": "alice",
                        "url": server.url,
                        "username": server.username,
                        "password_env": "DAV_PW",
                        "include": ["conferences", "reservations"],
                        "writeback": writeback,
                    }
                ],
            }
        )
        state = open_state(settings.state.url or "")
        yield Setup(
            live_sim,
            server,
            state,
            Syncer(settings, state, ServedFeeds(), client_options={"backoff_base": 0.01}),
        )
        state.close()


def office(setup: Setup) -> tuple[list[int], int]:
    """Office-hours slot ids in time order, and Alice's reservation id there."""
    world = setup.sim.world
    group = next(g for g in world.appointment_groups.values() if g.title == "Office hours")
    slots = sorted(
        (
            s
            for s in world.slots.values()
            if s.group_id == group.id and s.end_at > world.clock.now()
        ),
        key=lambda s: s.start_at,
    )
    alice = world.user_by_token(setup.sim.tokens["alice"])
    assert alice is not None
    res = next(
        r
        for r in world.reservations.values()
        if r.participant_id == alice.id
        and r.slot_id in {s.id for s in slots}
        and r.workflow_state == "locked"
    )
    return [s.id for s in slots], res.id


async def test_deleting_a_booking_cancels_it_in_canvas(setup: Setup) -> None:
    await setup.sync()
    _, res_id = office(setup)
    uid = f"canvas-reservation-{res_id}@{httpx.URL(setup.sim.url).netloc.decode()}"
    href, _ = setup.items()[uid]
    setup.delete(href)
    report = await setup.sync()
    assert [(c.kind, c.outcome) for c in report.commands] == [
        (CommandKind.CANCEL, CommandOutcome.APPLIED)
    ]
    assert setup.sim.world.reservations[res_id].workflow_state == "deleted"
    assert uid not in setup.items()
    assert setup.state.journal.recent()[0].state == "applied"
    again = await setup.sync()  # nothing more happens: no second cancel, no restore
    assert again.commands == [] and uid not in setup.items()


async def test_moving_a_booking_onto_an_open_slot_rebooks_it(
    setup: Setup, client_corpus: dict[str, ClientFile]
) -> None:
    await setup.sync()
    slots, res_id = office(setup)
    world = setup.sim.world
    free = next(s for s in slots if world.slots[s].workflow_state == "active")
    uid = f"canvas-reservation-{res_id}@{httpx.URL(setup.sim.url).netloc.decode()}"
    href, ics = setup.items()[uid]
    # as iOS writes it: Berlin local times with a VTIMEZONE, its own properties and an alarm
    body = client_corpus["ios-move-tzid.ics"].fill(
        ics, start=world.slots[free].start_at, end=world.slots[free].end_at
    )
    setup.put(href, body)
    report = await setup.sync()
    assert [(c.kind, c.outcome) for c in report.commands] == [
        (CommandKind.REBOOK, CommandOutcome.APPLIED)
    ], report
    mine = [
        r
        for r in world.reservations.values()
        if r.participant_id == world.reservations[res_id].participant_id
        and r.workflow_state == "locked"
        and r.slot_id in slots
    ]
    assert [r.slot_id for r in mine] == [free] and world.reservations[
        res_id
    ].workflow_state == "deleted"
    await (
        setup.sync()
    )  # the next poll brings the new reservation: same UID, same href, Canvas's time
    items = setup.items()
    assert items[uid][0] == href
    back = icalendar.Calendar.from_ical(items[uid][1]).walk("VEVENT")[0]
    assert back["DTSTART"].dt.astimezone(ZoneInfo("UTC")) == world.slots[free].start_at
    assert str(back["X-APPLE-TRAVEL-ADVISORY-BEHAVIOR"]) == "AUTOMATIC"
    assert len([u for u in items if u.startswith("canvas-reservation-")]) == 3  # no duplicate


async def test_a_deleted_conference_stays_hidden(setup: Setup) -> None:
    await setup.sync()
    host = httpx.URL(setup.sim.url).netloc.decode()
    conf = next(u for u in setup.items() if u.startswith("canvas-conference-") and u.endswith(host))
    setup.delete(setup.items()[conf][0])
    await setup.sync()
    await setup.sync()
    assert conf not in setup.items()
    assert conf in setup.state.caldav.hidden("phone")


@pytest.mark.writeback_off
async def test_writeback_off_restores_instead(setup: Setup) -> None:
    await setup.sync()
    _, res_id = office(setup)
    uid = f"canvas-reservation-{res_id}@{httpx.URL(setup.sim.url).netloc.decode()}"
    setup.delete(setup.items()[uid][0])
    report = await setup.sync()
    assert any("write-back is off" in reason for _, reason in report.restored)
    assert setup.sim.world.reservations[res_id].workflow_state == "locked" and uid in setup.items()


# --- every app's copy of a booking, through the real servers ---------------------------------


def booking_uid(setup: Setup) -> tuple[str, int]:
    _, res_id = office(setup)
    return f"canvas-reservation-{res_id}@{httpx.URL(setup.sim.url).netloc.decode()}", res_id


@pytest.mark.parametrize("name", sorted(catalogue()))
async def test_each_client_file_end_to_end(
    setup: Setup, client_corpus: dict[str, ClientFile], name: str
) -> None:
    """Each corpus file PUT over the booking calbridge wrote, as the app would, then one cycle:
    the outcome the corpus README promises, on Canvas and on the server. Files that move the
    event are moved where no slot is (5 h 7 min later); the move onto a slot is above."""
    client = client_corpus[name]
    await setup.sync()
    uid, res_id = booking_uid(setup)
    href, ours = setup.items()[uid]
    slot = setup.sim.world.slots[setup.sim.world.reservations[res_id].slot_id]
    nowhere = slot.start_at + timedelta(hours=5, minutes=7)
    body = client.fill(ours, start=nowhere) if client.edit == "move" else client.fill(ours)
    answer = setup.put_as_app(href, body)
    if client.edit == "not-utf-8" and setup.server.name == "xandikos":
        assert answer.status_code == 412 and "valid-calendar-data" in answer.text
    else:  # Radicale stores even Windows-1252 bytes (decoded as Latin-1)
        assert answer.status_code == 204, answer.text
    stored = setup.etag(href)

    report = await setup.sync_reporting()
    assert report.commands == []  # none of these is something Canvas can do
    assert setup.sim.world.reservations[res_id].workflow_state == "locked"
    back = icalendar.Calendar.from_ical(setup.items()[uid][1])
    if client.edit == "malformed":
        assert [(e.href, e.uid) for e in report.item_errors] == [(href, uid)]
        assert "unknown time zone 'Customized Time Zone'" in report.item_errors[0].message
    else:
        assert report.item_errors == []
    if client.edit in ("additions", "not-utf-8"):  # their copy stays as they wrote it
        assert report.restored == [] and setup.etag(href) == stored
        return
    reasons = {
        "move": "no open slot of 'Office hours' at "
        + nowhere.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M UTC"),
        "all-day": "a booking cannot become an all-day event",
        "recurrence": "a booking cannot repeat; Canvas books one appointment at a time",
    }
    if client.edit in reasons:
        assert report.restored == [(uid, reasons[client.edit])]
    # Canvas's one appointment is back: its time, nothing repeating
    (event,) = back.walk("VEVENT")
    assert event["DTSTART"].dt.astimezone(ZoneInfo("UTC")) == slot.start_at
    assert not {"RRULE", "RDATE", "EXDATE", "RECURRENCE-ID"} & set(event)
