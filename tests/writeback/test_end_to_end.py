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
from tests.conftest import Sim
from tests.servers import Server, radicale, xandikos


@dataclass
class Setup:
    sim: Sim
    server: Server
    state: StateStore
    syncer: Syncer

    async def sync(self) -> TargetReport:
        result = await self.syncer.sync_account(self.syncer.settings.accounts[0])
        assert result.ok, result.error
        report = result.targets[0]
        assert not report.errors, report.errors
        return report

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

    def put(self, href: str, ics: str) -> None:
        r = httpx.put(
            httpx.URL(self.server.url).join(href),
            content=ics,
            headers={"Content-Type": "text/calendar"},
        )
        assert r.status_code in (201, 204), r.text

    def delete(self, href: str) -> None:
        assert httpx.delete(httpx.URL(self.server.url).join(href)).status_code in (200, 204)


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


async def test_moving_a_booking_onto_an_open_slot_rebooks_it(setup: Setup) -> None:
    await setup.sync()
    slots, res_id = office(setup)
    world = setup.sim.world
    free = next(s for s in slots if world.slots[s].workflow_state == "active")
    uid = f"canvas-reservation-{res_id}@{httpx.URL(setup.sim.url).netloc.decode()}"
    href, ics = setup.items()[uid]
    cal = icalendar.Calendar.from_ical(ics)
    event = cal.walk("VEVENT")[0]
    berlin = ZoneInfo("Europe/Berlin")
    new_start = world.slots[free].start_at.astimezone(berlin).replace(tzinfo=None)
    # as Apple writes it: local time with a TZID, its own properties and an alarm
    for name in ("DTSTART", "DTEND"):
        del event[name]
    event.add("DTSTART", new_start, parameters={"TZID": "Europe/Berlin"})
    event.add(
        "DTEND",
        new_start + (world.slots[free].end_at - world.slots[free].start_at),
        parameters={"TZID": "Europe/Berlin"},
    )
    event.add("X-APPLE-TRAVEL-ADVISORY-BEHAVIOR", "AUTOMATIC")
    body = (
        cal.to_ical()
        .decode()
        .replace(
            f"DTSTART;TZID=Europe/Berlin:{new_start:%Y%m%dT%H%M%S}",
            f"DTSTART;TZID=Europe/Berlin:{new_start:%Y%m%dT%H%M%S}",
        )
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


async def test_moving_a_booking_nowhere_restores_it(setup: Setup) -> None:
    await setup.sync()
    _, res_id = office(setup)
    uid = f"canvas-reservation-{res_id}@{httpx.URL(setup.sim.url).netloc.decode()}"
    href, ics = setup.items()[uid]
    cal = icalendar.Calendar.from_ical(ics)
    event = cal.walk("VEVENT")[0]
    start = event["DTSTART"].dt + timedelta(hours=5, minutes=7)
    del event["DTSTART"], event["DTEND"]
    event.add("DTSTART", start)
    event.add("DTEND", start + timedelta(minutes=20))
    setup.put(href, cal.to_ical().decode())
    report = await setup.sync()
    assert any("no open slot" in reason for _, reason in report.restored), report.restored
    assert setup.sim.world.reservations[res_id].workflow_state == "locked"
    back = icalendar.Calendar.from_ical(setup.items()[uid][1]).walk("VEVENT")[0]
    assert (
        back["DTSTART"].dt
        == setup.sim.world.slots[setup.sim.world.reservations[res_id].slot_id].start_at
    )


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
