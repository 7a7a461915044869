"""Issue 9, end to end through the command line: each observation of the review, replayed against
the Canvas simulator and a real CalDAV server (Radicale and Xandikos), with ``calbridge sync``,
``calbridge writebacks`` and ``calbridge writebacks approve`` run as subprocesses on a TOML
config written here. Every test asserts on Canvas (the simulator's reservations and request
counts), on the server's content, on the exit code and on the output.

Only the first sync of each test (which fills the calendar) runs in-process, to save the
command's start-up time; everything the issue observed runs through the real command.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import icalendar
import pytest

from bridge.config import load_config
from bridge.daemon.cycle import Syncer
from bridge.state import open_state
from bridge.web.served import ServedFeeds
from tests.helpers.servers import Server, radicale, xandikos
from tests.helpers.sim import Sim

TARGET = "phone"
QUERY = """<?xml version="1.0"?>
<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">
  <d:prop><d:getetag/><c:calendar-data/></d:prop>
  <c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"/></c:comp-filter></c:filter>
</c:calendar-query>"""
CLI_TIMEOUT = 120
CANCEL = r"^/api/v1/calendar_events/\d+$"


@pytest.fixture(scope="module", params=["radicale", "xandikos"])
def dav(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server per module; each test writes into its own calendar (its own display name)."""
    start = {"radicale": radicale, "xandikos": xandikos}[request.param]
    with start(tmp_path_factory.mktemp(request.param)) as server:
        yield server


@dataclass(frozen=True)
class Item:
    href: str
    etag: str
    body: str


@dataclass
class Run:
    code: int
    out: str
    err: str
    seconds: float

    def json(self) -> dict:
        return json.loads(self.out)


@dataclass
class Bed:
    sim: Sim
    server: Server
    dir: Path
    config: Path
    collection: str = ""

    # --- the command line --------------------------------------------------------------

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT) -> Run:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALBRIDGE_")}
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "bridge", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.dir,
            env=env,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)

    def sync(self, *flags: str) -> Run:
        return self.cli("sync", "-c", str(self.config), *flags)

    def writebacks(self, *args: str) -> Run:
        return self.cli("writebacks", *args, "-c", str(self.config))

    def first_sync(self) -> None:
        """Fill the calendar (in-process: the command's start-up costs seconds per call)."""
        settings = load_config(self.config)
        state = open_state(settings.state.url or "")
        try:
            result = asyncio.run(
                Syncer(settings, state, ServedFeeds()).sync_account(settings.accounts[0])
            )
            assert result.ok, result.error
        finally:
            state.close()
        hrefs = [h for (h,) in self.db("SELECT href FROM caldav_items")]
        assert hrefs, "the first sync wrote nothing"
        self.collection = hrefs[0].rsplit("/", 1)[0] + "/"

    # --- the state store (read-only, except where a test says why) ------------------------

    def db(self, query: str, *params: object) -> list[tuple]:
        con = sqlite3.connect(self.dir / "state.sqlite3")
        try:
            with con:
                return con.execute(query, params).fetchall()
        finally:
            con.close()

    # --- the CalDAV server, as a person's app sees it ------------------------------------

    @property
    def auth(self) -> tuple[str, str]:
        return (self.server.username, "dav-secret")

    def url(self, href: str) -> str:
        return str(httpx.URL(self.server.url).join(href))

    def items(self) -> dict[str, Item]:
        """UID → what the server holds, read with one calendar-query REPORT (no calbridge code)."""
        listing = httpx.request(
            "REPORT",
            self.url(self.collection),
            auth=self.auth,
            headers={"Depth": "1", "Content-Type": "application/xml"},
            content=QUERY,
            timeout=30,
        )
        assert listing.status_code == 207, listing.text
        out = {}
        for response in ET.fromstring(listing.content).iter("{DAV:}response"):
            href = response.findtext("{DAV:}href") or ""
            body = response.findtext(".//{urn:ietf:params:xml:ns:caldav}calendar-data") or ""
            uid = re.search(r"^UID:(.*?)\r?$", body, re.M)
            assert uid is not None, body
            etag = response.findtext(".//{DAV:}getetag") or ""
            out[uid.group(1)] = Item(href, etag, body.replace("\r\n", "\n"))
        return out

    def put(self, href: str, ics: str) -> None:
        replacing = any(item.href == href for item in self.items().values())
        r = httpx.put(
            self.url(href), content=ics, auth=self.auth, headers={"Content-Type": "text/calendar"}
        )
        assert r.status_code == (204 if replacing else 201), (r.status_code, r.text)

    def delete(self, href: str) -> None:
        r = httpx.delete(self.url(href), auth=self.auth)
        expected = {"radicale": 200, "xandikos": 204}[self.server.name]
        assert r.status_code == expected, (r.status_code, r.text)

    # --- Canvas, as the simulator saw it -------------------------------------------------

    @property
    def host(self) -> str:
        return httpx.URL(self.sim.url).netloc.decode()

    def requests(self, method: str, contains: str = "") -> int:
        return sum(
            n
            for route, n in self.sim.world.stats.by_route.items()
            if route.startswith(f"{method} ") and contains in route
        )

    def alice_reservations(self) -> dict[int, str]:
        """Reservation id → appointment group title, of the bookings in Alice's calendar."""
        world = self.sim.world
        out = {}
        for uid in self.items():
            match = re.fullmatch(r"canvas-reservation-(\d+)@(.+)", uid)
            if match and match.group(2) == self.host:
                res = world.reservations[int(match.group(1))]
                out[res.id] = world.appointment_groups[world.slots[res.slot_id].group_id].title
        return out

    def booking_uid(self, title: str) -> str:
        rid = next(r for r, t in self.alice_reservations().items() if t == title)
        return f"canvas-reservation-{rid}@{self.host}"

    def state_of(self, res_id: int) -> str:
        return self.sim.world.reservations[res_id].workflow_state


def make_bed(
    sim: Sim, server: Server, tmp_path: Path, name: str, extra: str = "", target: str = ""
) -> Bed:
    (tmp_path / "alice.token").write_text(sim.tokens["alice"] + "\n")
    (tmp_path / "dav.pw").write_text("dav-secret\n")
    config = tmp_path / "calbridge.toml"
    config.write_text(
        f"""
[state]
url = "sqlite:///{tmp_path / "state.sqlite3"}"

[logging]
level = "warning"

{extra}

[[accounts]]
id = "alice"
canvas_url = "{sim.url}"
token_file = "{tmp_path / "alice.token"}"

[[feeds]]
id = "alice"
account = "alice"
include = ["conferences", "reservations"]

[[caldav]]
id = "{TARGET}"
account = "alice"
url = "{server.url}"
username = "{server.username}"
password_file = "{tmp_path / "dav.pw"}"
calendar = "{name}"
include = ["conferences", "reservations"]
writeback = true
{target}
"""
    )
    return Bed(sim, server, tmp_path, config)


@pytest.fixture
def bed(request: pytest.FixtureRequest, live_sim: Sim, dav: Server, tmp_path: Path) -> Bed:
    marker = request.node.get_closest_marker("calbridge_config")
    extra, target = (*marker.args, "")[:2] if marker else ("", "")
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:60]
    bed = make_bed(live_sim, dav, tmp_path, name, extra, target)
    bed.first_sync()
    return bed


def res_of(uid: str) -> int:
    match = re.fullmatch(r"canvas-reservation-(\d+)@.+", uid)
    assert match is not None, uid
    return int(match.group(1))


def only_target(run: Run) -> dict:
    (account,) = run.json()["accounts"]
    (target,) = account["targets"]
    assert target["target"] == TARGET
    return target


# --- 1. a write-back put off is not lost --------------------------------------------------


def test_a_cancel_put_off_by_a_5xx_is_pending_then_done_once(bed: Bed) -> None:
    uid = bed.booking_uid("Office hours")
    res_id = res_of(uid)
    bed.delete(bed.items()[uid].href)
    # Canvas answers 503 to every cancel until the fault is cleared.
    bed.sim.world.faults.add("status", path=CANCEL, method="DELETE", count=None, status=503)
    put_off = bed.sync("--json")
    listed = bed.writebacks()
    assert bed.state_of(res_id) == "locked"  # the simulator never carried it out
    assert bed.requests("DELETE") == 1  # one attempt: a write that may have landed is not retried
    assert uid not in bed.items()  # the person's deletion stands: nothing put back

    bed.sim.world.faults.clear()
    bed.sim.world.stats.reset()
    done = bed.sync("--json")
    # Canvas first: the deletion was not lost with the sync token, and is carried out once.
    assert bed.state_of(res_id) == "deleted"
    assert bed.requests("DELETE") == 1
    assert uid not in bed.items()
    # … and what was said: pending (outcome unknown), listed as PENDING, then applied.
    assert put_off.code == 0, put_off.err
    target = only_target(put_off)
    assert [(c["kind"], c["params"], c["outcome"]) for c in target["commands"]] == [
        ("cancel", {"reservation_id": res_id}, "unknown")
    ]
    assert target["state"] == "pending"
    assert listed.code == 0, listed.err
    assert re.search(rf"^PENDING {TARGET} cancel {re.escape(uid)} \(pending\)", listed.out, re.M), (
        listed.out
    )
    assert done.code == 0, done.err
    assert [c["outcome"] for c in only_target(done)["commands"]] == ["applied"]

    again = bed.sync("--json")  # nothing left to do: no second cancel, nothing put back
    assert again.code == 0, again.err
    assert only_target(again)["commands"] == []
    assert bed.requests("DELETE") == 1
    assert uid not in bed.items()
    assert "PENDING" not in bed.writebacks().out


@pytest.mark.parametrize("dav", ["radicale"], indirect=True)  # the 5xx case runs on both
def test_a_cancel_cut_off_by_a_reset_is_pending_then_done_once(bed: Bed) -> None:
    uid = bed.booking_uid("Office hours")
    res_id = res_of(uid)
    bed.delete(bed.items()[uid].href)
    # The connection dies in the middle of Canvas's answer to the cancel.
    bed.sim.world.faults.add("reset", path=CANCEL, method="DELETE", count=None)
    put_off = bed.sync("--json")
    assert bed.state_of(res_id) == "locked" and uid not in bed.items()

    bed.sim.world.faults.clear()
    bed.sim.world.stats.reset()
    done = bed.sync("--json")
    assert bed.state_of(res_id) == "deleted" and uid not in bed.items()
    assert bed.requests("DELETE") == 1
    assert put_off.code == 0, put_off.err
    assert [c["outcome"] for c in only_target(put_off)["commands"]] == ["unknown"]
    assert done.code == 0, done.err
    assert [c["outcome"] for c in only_target(done)["commands"]] == ["applied"]


@pytest.mark.calbridge_config("[writeback]\nmax_per_minute = 1\nsafety_max_fraction = 1.0")
def test_the_rate_limit_puts_a_cancel_off_until_a_later_sync(bed: Bed) -> None:
    first, second = bed.booking_uid("Office hours"), bed.booking_uid("Project review")
    ids = {u: res_of(u) for u in (first, second)}
    items = bed.items()
    bed.delete(items[first].href)
    bed.delete(items[second].href)

    first_run = bed.sync("--json")
    listed = bed.writebacks()
    done = {u for u, i in ids.items() if bed.state_of(i) == "deleted"}
    assert len(done) == 1 and bed.requests("DELETE") == 1
    (waiting,) = set(ids) - done

    # The limit counts `sent_at` of the last minute with the real clock; rather than sleep a
    # minute, the sent entry is made two minutes older, as if the next sync ran later.
    bed.db(
        "UPDATE writeback_journal SET sent_at = datetime(sent_at, '-2 minutes') "
        "WHERE sent_at IS NOT NULL"
    )
    later = bed.sync("--json")
    # Canvas first: the second cancel was not lost; each booking cancelled once.
    assert {bed.state_of(i) for i in ids.values()} == {"deleted"}
    assert bed.requests("DELETE") == 2
    assert not {first, second} & set(bed.items())
    # … and what was said: the second one pending (rate_limited), listed, then applied.
    assert first_run.code == 0, first_run.err
    outcomes = {c["uid"]: c["outcome"] for c in only_target(first_run)["commands"]}
    assert outcomes == {waiting: "rate_limited", done.pop(): "applied"}, outcomes
    assert re.search(
        rf"^PENDING {TARGET} cancel {re.escape(waiting)} \(deferred\)", listed.out, re.M
    ), listed.out
    assert later.code == 0, later.err
    assert [(c["uid"], c["outcome"]) for c in only_target(later)["commands"]] == [
        (waiting, "applied")
    ]


# --- 2. wiping the calendar ---------------------------------------------------------------


def wipe(bed: Bed) -> dict[str, Item]:
    before = bed.items()
    for item in before.values():
        bed.delete(item.href)
    assert bed.items() == {}
    return before


def test_wiping_the_calendar_stops_and_discard_puts_everything_back(bed: Bed) -> None:
    bookings = bed.alice_reservations()
    assert len(bookings) >= 3
    before = wipe(bed)
    bed.sim.world.stats.reset()

    run = bed.sync("--json")
    assert bed.requests("DELETE") == 0
    assert {bed.state_of(r) for r in bookings} == {"locked"}
    assert bed.items() == {}  # nothing put back before a person decides
    assert run.code == 8, (run.out, run.err)
    stop = only_target(run)["safety_stop"]
    assert stop is not None
    assert stop["kind"] == "empty_listing", stop
    assert set(stop["uids"]) == set(before)
    assert "writebacks approve phone" in stop["message"]

    listed = bed.writebacks()
    assert re.search(r"^SAFETY STOP\b(?=.*\bheld\b)(?=.*\bphone\b)", listed.out, re.M), listed.out
    assert "writebacks approve phone" in listed.out and "--discard" in listed.out

    approve = bed.writebacks("approve", TARGET, "--discard")
    assert approve.code == 0, approve.err
    run = bed.sync()
    assert run.code == 0, (run.out, run.err)
    assert set(bed.items()) == set(before)
    assert bed.requests("DELETE") == 0
    assert {bed.state_of(r) for r in bookings} == {"locked"}
    assert "SAFETY STOP" not in bed.writebacks().out


def test_wiping_the_calendar_then_approving_cancels_each_booking_once(bed: Bed) -> None:
    bookings = bed.alice_reservations()
    wipe(bed)
    bed.sim.world.stats.reset()
    run = bed.sync()
    assert bed.requests("DELETE") == 0
    assert run.code == 8, (run.out, run.err)
    assert "SAFETY STOP" in run.out

    approve = bed.writebacks("approve", TARGET)
    assert approve.code == 0, approve.err
    run = bed.sync("--json")
    assert run.code == 0, (run.out, run.err)
    cancels = [c for c in only_target(run)["commands"] if c["kind"] == "cancel"]
    assert sorted(c["params"]["reservation_id"] for c in cancels) == sorted(bookings)
    assert {c["outcome"] for c in cancels} == {"applied"}
    assert bed.requests("DELETE") == len(bookings)
    assert {bed.state_of(r) for r in bookings} == {"deleted"}
    assert not any(u.startswith("canvas-reservation-") for u in bed.items())


# --- 3. an event calbridge did not write ----------------------------------------------------


def vcalendar(*lines: str) -> str:
    return "\r\n".join(
        [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//Someone//Their app//EN",
            "BEGIN:VEVENT",
            *list(lines),
            "END:VEVENT",
            "END:VCALENDAR",
            "",
        ]
    )


def utc(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def open_slots(bed: Bed, group: str) -> list[int]:
    world = bed.sim.world
    gid = next(g.id for g in world.appointment_groups.values() if g.title == group)
    taken = {r.slot_id for r in world.reservations.values() if r.workflow_state == "locked"}
    return sorted(
        (
            s.id
            for s in world.slots.values()
            if s.group_id == gid
            and s.start_at > world.clock.now()
            and s.id not in taken
            and s.end_at > s.start_at
        ),
        key=lambda s: world.slots[s].start_at,
    )


def team_lunch(bed: Bed, slot_id: int) -> str:
    return vcalendar(
        f"UID:canvas-slot-{slot_id}@{bed.host}",
        "DTSTAMP:20260101T000000Z",
        "DTSTART:20300115T120000Z",
        "DTEND:20300115T130000Z",
        "SUMMARY:Team lunch",
        "ORGANIZER;CN=Boss:mailto:boss@example.org",
        "ATTENDEE;CN=Alice:mailto:alice@example.org",
    )


def test_a_sharees_event_with_a_slot_uid_books_nothing_and_is_left_alone(bed: Bed) -> None:
    slot = open_slots(bed, "Project review")[0]
    href = bed.collection + "team-lunch.ics"
    bed.put(href, team_lunch(bed, slot))
    uid = f"canvas-slot-{slot}@{bed.host}"
    theirs = bed.items()[uid]
    bed.sim.world.stats.reset()

    run = bed.sync()
    assert run.code == 0, (run.out, run.err)
    assert bed.requests("POST", "reservations") == 0
    assert bed.requests("DELETE") == 0
    assert not any(r.slot_id == slot for r in bed.sim.world.reservations.values())
    assert bed.items()[uid] == theirs  # same href, ETag and body: not deleted, not rewritten


@pytest.mark.calbridge_config("", "reserve_by_copy = true")
def test_an_exact_copy_of_an_open_slot_books_it_once_and_stays(bed: Bed) -> None:
    copied, other = open_slots(bed, "Project review")[:2]
    world = bed.sim.world
    slot = world.slots[copied]
    copy_uid = f"canvas-slot-{copied}@{bed.host}"
    bed.put(
        bed.collection + "copied-slot.ics",
        vcalendar(
            f"UID:{copy_uid}",
            "DTSTAMP:20260101T000000Z",
            f"DTSTART:{utc(slot.start_at)}",
            f"DTEND:{utc(slot.end_at)}",
            "SUMMARY:Project review",
        ),
    )
    # beside it, an invitation that carries another slot's UID: never books, even with the
    # option on (other times, someone else's organizer)
    bed.put(bed.collection + "team-lunch.ics", team_lunch(bed, other))
    before = bed.items()
    bed.sim.world.stats.reset()

    run = bed.sync("--json")
    made = [
        r
        for r in world.reservations.values()
        if r.slot_id == copied and r.workflow_state == "locked"
    ]
    assert len(made) == 1
    assert not any(r.slot_id == other for r in world.reservations.values())
    assert bed.requests("POST", "reservations") == 1
    assert run.code == 0, (run.out, run.err)
    commands = only_target(run)["commands"]
    assert [(c["kind"], c["params"], c["outcome"]) for c in commands] == [
        ("reserve", {"slot_id": copied}, "applied")
    ]

    run = bed.sync()  # the next poll brings the booking: calbridge adds its own event beside
    assert run.code == 0, (run.out, run.err)
    assert bed.requests("POST", "reservations") == 1
    after = bed.items()
    assert after[copy_uid] == before[copy_uid]
    other_uid = f"canvas-slot-{other}@{bed.host}"
    assert after[other_uid] == before[other_uid]
    assert f"canvas-reservation-{made[0].id}@{bed.host}" in after


# --- 4. malformed events --------------------------------------------------------------------


def corrupt(body: str, case: str) -> str:
    """One hostile edit, of the kinds the review saw, to an event calbridge wrote. Each one
    survives both servers and makes icalendar raise when read. (Others do not: Radicale rewrites
    a year-0 DTSTART as 2000 and a year-9999 local one as a date, and refuses a duplicate
    DTSTART with 400; Xandikos answers 500 to a duplicate DTSTART replacing an event.)"""
    out: list[str] = []
    for line in body.replace("\r\n", "\n").split("\n"):
        name = re.split(r"[;:]", line, maxsplit=1)[0]
        if name == "SEQUENCE" and case == "sequence":
            continue
        if name == "SUMMARY" and case == "sequence":  # merge: int() of vBroken → ValueError
            out += ["SUMMARY:Edited on my phone", "SEQUENCE:abc"]
        elif name == "SUMMARY" and case == "broken":  # BrokenCalendarProperty when read
            out += [line, "PRIORITY:high"]
        elif name == "SUMMARY" and case == "overflow":  # OverflowError when made UTC
            out += [line, "DUE;TZID=America/New_York:99991231T230000"]
        else:
            out.append(line)
    return "\r\n".join(out)


def test_malformed_events_are_reported_and_everything_else_syncs(bed: Bed) -> None:
    world = bed.sim.world
    items = bed.items()
    bookings = bed.alice_reservations()
    lecture = next(c for c in world.conferences.values() if c.title == "Lecture 5: Recursion")
    victims = {
        "sequence": bed.booking_uid("Office hours"),
        "broken": f"canvas-conference-{lecture.id}@{bed.host}",
        "overflow": bed.booking_uid("Project review"),
    }
    for case, uid in victims.items():
        bed.put(items[uid].href, corrupt(items[uid].body, case))
    # … and a Canvas-side change to another event, which must reach the calendar in this run
    conf = next(c for c in world.conferences.values() if c.title == "Team Ada stand-up")
    with world.lock:
        conf.title = "Team Ada stand-up (moved to Zoom)"
    conf_uid = f"canvas-conference-{conf.id}@{bed.host}"
    world.stats.reset()

    run = bed.sync()
    assert run.code == 11, (run.out, run.err)
    for case, uid in victims.items():
        assert f"ERROR in {items[uid].href}" in run.out, (case, run.out)
    assert "Traceback" not in run.err
    assert summary(bed.items()[conf_uid].body) == "Team Ada stand-up (moved to Zoom)"
    assert re.search(r"^alice: ok \(feeds: alice \d+ events changed\)", run.out, re.M), run.out
    ((feed,),) = bed.db("SELECT body FROM rendered_feeds WHERE feed_id = 'alice'")
    assert b"moved to Zoom" in feed
    assert bed.requests("DELETE") == 0 and bed.requests("POST", "reservations") == 0
    assert {bed.state_of(r) for r in bookings} == {"locked"}


def summary(ics: str) -> str:
    return str(icalendar.Calendar.from_ical(ics).walk("VEVENT")[0]["SUMMARY"])


def test_several_canvas_changes_in_one_sync_all_reach_the_calendar(bed: Bed) -> None:
    """Xandikos answers 423 Locked to concurrent PUTs (its git index is locked): found while
    writing the test above, where four updates in one cycle failed."""
    world = bed.sim.world
    with world.lock:
        renamed = {}
        for conf in world.conferences.values():
            uid = f"canvas-conference-{conf.id}@{bed.host}"
            conf.title += " (renamed)"
            renamed[uid] = conf.title
    renamed = {u: t for u, t in renamed.items() if u in bed.items()}
    assert len(renamed) >= 4
    run = bed.sync()
    assert run.code == 0, (run.out, run.err)
    items = bed.items()
    for uid, title in renamed.items():
        assert summary(items[uid].body).endswith(title), (uid, run.out)


# --- 5. a rerun right after kill -9 ---------------------------------------------------------


@pytest.mark.parametrize("dav", ["radicale"], indirect=True)  # leases do not involve the server
def test_a_rerun_right_after_kill_9_completes(bed: Bed) -> None:
    # Canvas answers after 30 s: the first sync is stuck mid-cycle, holding the account's lease.
    bed.sim.world.faults.add("delay", path=r"^/api/", count=None, delay=30)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALBRIDGE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "sync", "-c", str(bed.config)],
        cwd=bed.dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not bed.db("SELECT holder FROM leases WHERE holder LIKE ?", f"%:{proc.pid}"):
            assert proc.poll() is None, "the sync ended before it was killed"
            assert time.monotonic() < deadline, "the sync never took its lease"
            time.sleep(0.1)
        time.sleep(0.5)  # now inside the poll
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert bed.db("SELECT holder FROM leases WHERE holder LIKE ?", f"%:{proc.pid}")  # left behind
    bed.sim.world.faults.clear()

    run = bed.cli("sync", "-c", str(bed.config), "--wait", "5")
    assert run.code == 0, (run.out, run.err)
    assert run.out.startswith("alice: ok"), run.out
    # start-up of the command itself is ~2-4 s here; waiting for the lease would add ≥ 5 s
    # and end in exit 13
    assert run.seconds < 15, run.seconds


# --- 6. the dry run shows its plan ----------------------------------------------------------


def test_dry_run_lists_every_command_and_action_and_writes_nothing(bed: Bed) -> None:
    world = bed.sim.world
    booked = set(bed.alice_reservations())
    office = bed.booking_uid("Office hours")
    res_id = res_of(office)
    items = bed.items()
    bed.delete(items[office].href)
    # Canvas-side: a renamed conference (update), a new one (create), a removed one (delete)
    with world.lock:
        renamed = next(c for c in world.conferences.values() if c.title == "Lecture 5: Recursion")
        renamed.title = "Lecture 5: Recursion and iteration"
        gone = next(c for c in world.conferences.values() if c.title == "Team Ada stand-up")
        del world.conferences[gone.id]
        course = next(c for c in world.courses.values() if c.name == "Computer Science 101")
        alice = world.user_by_token(bed.sim.tokens["alice"])
        assert alice is not None
        start = world.clock.now() + timedelta(days=1, hours=3)
        added = world.add_conference(
            course,
            "Exam prep",
            start_at=start,
            end_at=start + timedelta(hours=1),
            participants={alice.id: "invitee"},
        )
    uid = {
        what: f"canvas-conference-{c.id}@{bed.host}"
        for what, c in (("added", added), ("renamed", renamed), ("gone", gone))
    }
    before = bed.items()
    state_before = bed.db("SELECT uid, etag, content_hash FROM caldav_items ORDER BY uid")
    world.stats.reset()

    run = bed.sync("--dry-run")
    assert run.code == 0, (run.out, run.err)
    out = run.out
    assert (
        f"would send to Canvas: cancel reservation {res_id} 'Office hours' — deleted in the calendar"
        in out
    ), out
    assert "[dry run: nothing written]" in out
    assert f"calendar (would): create {uid['added']}" in out
    assert f"calendar (would): update {uid['renamed']}" in out
    assert f"calendar (would): delete {uid['gone']}" in out

    run = bed.sync("--dry-run", "--json")
    assert run.code == 0, (run.out, run.err)
    data = run.json()
    assert data["dry_run"] is True
    target = only_target(run)
    assert [(c["kind"], c["params"], c["outcome"], c["title"]) for c in target["commands"]] == [
        ("cancel", {"reservation_id": res_id}, "planned", "Office hours")
    ]
    ops = {(a["op"], a["uid"]) for a in target["actions"]}
    assert {("create", uid["added"]), ("update", uid["renamed"]), ("delete", uid["gone"])} <= ops

    # Nothing was written: not to Canvas, not to the server, not to the state.
    assert world.stats.as_dict()["by_route"].keys() and all(
        route.startswith("GET ") for route in world.stats.as_dict()["by_route"]
    )
    assert world.reservations[res_id].workflow_state == "locked"
    assert bed.items() == before
    assert bed.db("SELECT uid, etag, content_hash FROM caldav_items ORDER BY uid") == state_before
    assert bed.db("SELECT count(*) FROM writeback_journal") == [(0,)]

    # A wiped calendar: the dry run shows the safety stop, and still writes nothing.
    wipe(bed)
    run = bed.sync("--dry-run")
    assert run.code == 8, (run.out, run.err)
    assert re.search(
        r"^    SAFETY STOP: safety stop on phone: the server lists none", run.out, re.M
    ), run.out
    assert "held (safety stop): cancel reservation" in run.out
    run = bed.sync("--dry-run", "--json")
    assert run.code == 8, (run.out, run.err)
    target = only_target(run)
    assert target["safety_stop"] is not None and target["state"] == "stopped"
    assert set(target["safety_stop"]["uids"]) == set(before) | {office}  # all it wrote
    assert sorted((c["params"]["reservation_id"], c["outcome"]) for c in target["commands"]) == [
        (r, "held") for r in sorted(booked)
    ]
    assert bed.items() == {}
    assert bed.db("SELECT count(*) FROM safety_stops") == [(0,)]
    assert all(route.startswith("GET ") for route in world.stats.as_dict()["by_route"])
