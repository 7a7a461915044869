"""A hypothesis state machine over the real two-way sync: plan → decide → execute, the real
CalendarRemote (over an in-memory CalDAV collection with sync tokens and ETag preconditions),
the real journal, safety stops and status in SQLite, and a fake Canvas with injectable
failures on reads and writes.

Between any two steps: people delete, move (as the apps of the client corpus write a move),
copy and break events, wipe the calendar, Canvas
changes on its own, Canvas answers 5xx before or after doing the write, refuses, the calendar
server fails to list, the process "crashes" between any two writes, the rate limit is hit, and
a person approves or discards a safety stop. After every step:

* no reservation is cancelled twice, no slot reserved twice;
* every Canvas write answers something a person did (nothing invented), and events calbridge
  did not write are never changed;
* a mass deletion makes no Canvas write before a person approves;
* a person's deletion is never forgotten: it reached Canvas, was put back, or is still pending
  and visible (an open journal entry, a safety stop, or still in the status with a token that
  will show it again);

and a *settle* step (faults cleared, stops answered) must end with every deletion carried to
Canvas or put back, nothing pending, and a next cycle that does nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bridge.canvas.writes import WriteResult
from bridge.dav.remote import CalendarRemote
from bridge.dav.webdav import Listing
from bridge.errors import CalDAVConflict, CalDAVUnavailable
from bridge.mapping import collect_events, next_versions, render_event_ics
from bridge.mapping.versions import EventVersion
from bridge.model.canvas import AccountSnapshot
from bridge.model.outcomes import CommandKind, CommandOutcome, StopKind, TargetReport
from bridge.model.status import Collection
from bridge.state import StateStore, open_state
from bridge.state.journal import Limits
from bridge.state.stops import StopState
from bridge.sync.execute import Ledger, redrive
from bridge.sync.plan import DesiredItem
from bridge.sync.run import CalendarSync, Writeback
from tests.helpers.clients import catalogue, client_edit
from tests.helpers.options import event_options, target_settings, writeback_policy

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
HOST = "canvas.test"
TARGET = "phone"
SLOTS = {100 + i: NOW + timedelta(days=1 + i, hours=-2) for i in range(6)}  # slot id → start
LENGTH = timedelta(minutes=20)


class Crash(Exception):
    """The process dies here: nothing after this point of the cycle happens."""


# --- an in-memory CalDAV collection ---------------------------------------------------------


class MemoryDav:
    """The part of :class:`bridge.dav.webdav.Dav` the sync uses, in memory: sync tokens over a
    change log, ETags, If-Match / If-None-Match."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, str]] = {}
        self.log: list[tuple[int, str]] = []
        self.seq = 0
        self._etags = itertools.count(1)
        self.requests = 0
        self.fail_next_read = False
        self.crash_after_writes: int | None = None

    # what people (and this test) do to the collection
    def store(self, href: str, ics: str) -> str:
        etag = f'"e{next(self._etags)}"'
        self.items[href] = (etag, ics)
        self.seq += 1
        self.log.append((self.seq, href))
        return etag

    def remove(self, href: str) -> None:
        if self.items.pop(href, None) is not None:
            self.seq += 1
            self.log.append((self.seq, href))

    # the Dav interface
    def href_path(self, href: str) -> str:
        return href if href.startswith("/") else "/cal/" + href

    async def aclose(self) -> None:
        return None

    async def sync(self, token: str | None) -> Listing:
        self.requests += 1
        if self.fail_next_read:
            self.fail_next_read = False
            raise CalDAVUnavailable("injected: the server did not answer", target=TARGET)
        if not token:
            etags: dict[str, str | None] = {h: e for h, (e, _) in self.items.items()}
            return Listing(etags, set(), str(self.seq), complete=True)
        changed = {h for s, h in self.log if s > int(token)}
        etags = {h: self.items[h][0] for h in changed if h in self.items}
        return Listing(etags, changed - set(etags), str(self.seq), complete=False)

    async def multiget(self, hrefs: list[str]) -> dict[str, tuple[str | None, str]]:
        self.requests += 1
        return {h: self.items[h] for h in hrefs if h in self.items}

    def _write(self) -> None:
        self.requests += 1
        if self.crash_after_writes is not None:
            if self.crash_after_writes == 0:
                self.crash_after_writes = None
                raise Crash("killed between two calendar writes")
            self.crash_after_writes -= 1

    async def put(
        self, href: str, ics: str, *, etag: str | None = None, create: bool = False
    ) -> str | None:
        self._write()
        current = self.items.get(href)
        if (create and current is not None) or (etag and (current is None or current[0] != etag)):
            raise CalDAVConflict(f"{href} changed on the server (412)", target=TARGET, status=412)
        return self.store(href, ics)

    async def delete(self, href: str, etag: str | None) -> None:
        self._write()
        current = self.items.get(href)
        if current is not None and etag and current[0] != etag:
            raise CalDAVConflict(f"{href} changed on the server (412)", target=TARGET, status=412)
        self.remove(href)


class MemoryRemote(CalendarRemote):
    """The real CalendarRemote (read, write, token handling) over :class:`MemoryDav`."""

    def __init__(self, dav: MemoryDav) -> None:
        super().__init__(target_settings(TARGET, "memory://", "u", "p"))
        self.memory = dav

    async def open(self, *, create: bool, known: Collection | None = None) -> None:
        self._collection = "/cal/"
        self._dav = self.memory  # type: ignore[assignment]

    async def close(self) -> None:
        return None


# --- a fake Canvas with injectable failures -------------------------------------------------


class FakeCanvas:
    def __init__(self) -> None:
        self.reservations: dict[int, int] = {1000: 100, 1001: 101, 1002: 102}  # res → slot
        self.cancelled: set[int] = set()
        self._ids = itertools.count(2000)
        self.fault: str | None = None  # next send: 5xx_before | 5xx_after | refuse | crash_after
        self.verify_fails = False
        self.violations: list[str] = []
        self.writes: list[tuple[CommandKind, dict[str, int]]] = []
        self.asked_for: Callable[[CommandKind, Mapping[str, int]], bool] = lambda _k, _p: True

    def mine(self) -> dict[int, int]:
        return {r: s for r, s in self.reservations.items() if r not in self.cancelled}

    def snapshot(self) -> AccountSnapshot:
        held = set(self.mine().values())
        return AccountSnapshot.model_validate(
            {
                "canvas_host": HOST,
                "fetched_at": NOW,
                "user": {"id": 1, "name": "Ana"},
                "reservable": [
                    {
                        "id": 1,
                        "title": "Office hours",
                        "participants_per_appointment": 1,
                        "reserved_times": [
                            {"id": r, "start_at": SLOTS[s], "end_at": SLOTS[s] + LENGTH}
                            for r, s in sorted(self.mine().items())
                        ],
                        "appointments": [
                            {
                                "id": s,
                                "title": "Office hours",
                                "start_at": start,
                                "end_at": start + LENGTH,
                                "appointment_group_id": 1,
                                "reserved": s in held,
                                "available_slots": 0 if s in held else 1,
                            }
                            for s, start in SLOTS.items()
                        ],
                    }
                ],
            }
        )

    # Canvas-side changes
    def teacher_cancels(self, res: int) -> None:
        self.cancelled.add(res)

    def books_in_canvas(self, slot: int) -> None:
        if slot not in self.mine().values():
            self.reservations[next(self._ids)] = slot

    def _apply(self, kind: CommandKind, params: Mapping[str, int]) -> int | None:
        self.writes.append((kind, dict(params)))
        if not self.asked_for(kind, params):
            self.violations.append(f"{kind} {dict(params)}: nobody did anything that asks for it")
        if kind is CommandKind.CANCEL:
            res = params["reservation_id"]
            if res in self.cancelled:
                self.violations.append(f"reservation {res} cancelled twice")
            self.cancelled.add(res)
            return None
        slot = params["to_slot_id"] if kind is CommandKind.REBOOK else params["slot_id"]
        if slot in self.mine().values():
            self.violations.append(f"slot {slot} reserved twice")
        if kind is CommandKind.REBOOK:
            self.cancelled.add(params["from_reservation_id"])
        new = next(self._ids)
        self.reservations[new] = slot
        return new

    async def send(self, kind: CommandKind, params: Mapping[str, int], reason: str) -> WriteResult:
        fault, self.fault = self.fault, None
        if fault == "5xx_before":
            return WriteResult(CommandOutcome.UNKNOWN, "503 Service Unavailable")
        if fault == "refuse":
            return WriteResult(CommandOutcome.REFUSED, "all slots filled")
        slot = params.get("to_slot_id", params.get("slot_id"))
        # Canvas would refuse these, and the refusal would put back an event the person had
        # deleted: sending a write that was already done is a violation, not just a no-op.
        if kind is CommandKind.CANCEL and params["reservation_id"] in self.cancelled:
            self.violations.append(f"cancel of reservation {params['reservation_id']} sent twice")
            return WriteResult(CommandOutcome.REFUSED, "already cancelled")
        if kind is not CommandKind.CANCEL and slot in self.mine().values():
            self.violations.append(f"reservation of slot {slot}, which is already booked, sent")
            return WriteResult(CommandOutcome.REFUSED, "already reserved")
        new = self._apply(kind, params)
        if fault == "5xx_after":
            return WriteResult(CommandOutcome.UNKNOWN, "connection reset after sending")
        if fault == "crash_after":
            raise Crash("killed after Canvas did it, before the journal heard")
        return WriteResult(CommandOutcome.APPLIED, "done", new)

    async def verify(self, kind: CommandKind, params: Mapping[str, int]) -> bool | None:
        if self.verify_fails:
            return None
        if kind is CommandKind.CANCEL:
            return params["reservation_id"] in self.cancelled
        slot = params["to_slot_id"] if kind is CommandKind.REBOOK else params["slot_id"]
        return slot in self.mine().values()


# --- the machine ----------------------------------------------------------------------------


# the client corpus's files that a person can drag to another time (tests/corpus/clients)
MOVERS = sorted(name for name, f in catalogue().items() if f.edit in ("move", "additions"))


def res_uid(res: int) -> str:
    return f"canvas-reservation-{res}@{HOST}"


def slot_copy(slot: int, *, organizer: bool, when: datetime | None = None) -> str:
    start = when or SLOTS[slot]
    extra = "ORGANIZER:mailto:boss@example.com\r\n" if organizer else ""
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//phone//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:canvas-slot-{slot}@{HOST}\r\nDTSTAMP:20260301T000000Z\r\n"
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}\r\nDTEND:{start + LENGTH:%Y%m%dT%H%M%SZ}\r\n"
        f"SUMMARY:{'Team lunch' if organizer else 'Open slot: Office hours'}\r\n{extra}"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


_TEMPLATE: list[Path] = []


def fresh_database(directory: Path) -> str:
    """A migrated state database, copied from one made once per test run (migrating a new
    database for every example would cost most of the run's time)."""
    if not _TEMPLATE:
        template = Path(tempfile.mkdtemp(prefix="calbridge-template-", dir=_tmp_root()))
        open_state(f"sqlite:///{template / 'state.sqlite3'}").close()
        _TEMPLATE.append(template / "state.sqlite3")
    shutil.copy(_TEMPLATE[0], directory / "state.sqlite3")
    return f"sqlite:///{directory / 'state.sqlite3'}"


def _tmp_root() -> str | None:
    """Memory-backed when the machine has it: each cycle commits several transactions."""
    return "/dev/shm" if Path("/dev/shm").is_dir() else None


class TwoWaySync(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="calbridge-machine-", dir=_tmp_root()))
        self.state: StateStore = open_state(fresh_database(self.dir))
        self.dav = MemoryDav()
        self.canvas = FakeCanvas()
        self.calendar = CalendarSync(
            target_settings(TARGET, "memory://", "u", "p"), remote=MemoryRemote(self.dav)
        )
        self.limits = Limits(per_minute=1000, per_day=100_000)
        self.reserve_by_copy = True
        self.versions: dict[str, EventVersion] = {}
        self.deleted_by_person: dict[int, str] = {}  # reservation → uid, deleted in the calendar
        self.moved_to: set[int] = set()  # slots the person moved a booking onto
        self.copied: set[int] = set()  # slots the person copied exactly (may book)
        self.foreign: dict[str, tuple[str, str]] = {}  # href → (etag, ics) never to be touched
        self.last: TargetReport | None = None
        self.wiped = False  # the calendar was wiped; no Canvas write until a person approves
        self.canvas.asked_for = self.asked_for
        self.sync_now()

    def asked_for(self, kind: CommandKind, params: Mapping[str, int]) -> bool:
        """Nothing invented: every Canvas write answers something a person did."""
        if kind is CommandKind.CANCEL:
            return params["reservation_id"] in self.deleted_by_person
        if kind is CommandKind.REBOOK:
            return params["to_slot_id"] in self.moved_to
        return params["slot_id"] in self.copied

    def teardown(self) -> None:
        self.state.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- running one cycle, as the daemon's cycle does ----------------------------------------

    def desired(self, snapshot: AccountSnapshot) -> tuple[dict[str, DesiredItem], dict]:  # type: ignore[type-arg]
        options = event_options(
            include={"reservations"}, reservation_uids=self.state.journal.aliases("ana")
        )
        events = collect_events(snapshot, options, NOW).events
        self.versions = next_versions(events, self.versions, NOW)
        desired = {
            e.uid: DesiredItem(
                e.uid, render_event_ics(e, self.versions[e.uid], options, NOW), e.content_hash()
            )
            for e in events
        }
        return desired, {e.uid: e for e in events}

    def ledger(self) -> Ledger:
        return Ledger("ana", self.state.journal, self.state.stops, self.canvas, self.limits)

    async def _cycle(self) -> TargetReport:
        await redrive(self.ledger())
        snapshot = self.canvas.snapshot()
        desired, events = self.desired(snapshot)
        writeback = Writeback(
            snapshot,
            events,
            writeback_policy(reserve_by_copy=self.reserve_by_copy),
            self.ledger(),
        )
        return await self.calendar.run(
            desired,
            self.state.caldav,
            now=NOW,
            hidden=self.state.caldav.hidden(TARGET),
            writeback=writeback,
        )

    def sync_now(self) -> TargetReport | None:
        writes_before = len(self.canvas.writes)
        try:
            report = asyncio.run(self._cycle())
        except (Crash, CalDAVUnavailable):  # died, or the server did not answer: next time
            self.last = None
            return None
        self.last = report
        approved = self.state.stops.get(TARGET) is not None and report.stop is None
        if self.wiped and not approved:  # at most one booking may be cancelled without a stop
            writes = [
                w for w in self.canvas.writes[writes_before:] if w[0] is not CommandKind.RESERVE
            ]  # a copied open slot is a booking the person made, not one that vanished
            assert len(writes) <= 1, f"a wiped calendar made {writes} Canvas writes unapproved"
        if report.stop is not None:
            assert len(self.canvas.writes) == writes_before, "a Canvas write during a safety stop"
        else:
            self.wiped = False
        return report

    # --- what people do in their calendar -----------------------------------------------------

    def owned_on_server(self) -> dict[str, str]:
        status = self.state.caldav.load(TARGET)
        return {uid: s.href for uid, s in status.items() if s.href in self.dav.items}

    @rule(data=st.data())
    def person_deletes_a_booking(self, data: st.DataObject) -> None:
        owned = {u: h for u, h in self.owned_on_server().items() if u.startswith("canvas-res")}
        if not owned:
            return
        uid = data.draw(st.sampled_from(sorted(owned)))
        self.dav.remove(owned[uid])
        res = next((r for r in self.canvas.reservations if res_uid(r) == uid), None)
        aliased = {u: r for r, u in self.state.journal.aliases("ana").items()}
        res = aliased.get(uid, res)
        if res is not None:
            self.deleted_by_person[res] = uid

    @rule(data=st.data())
    def person_moves_a_booking(self, data: st.DataObject) -> None:
        owned = {u: h for u, h in self.owned_on_server().items() if u.startswith("canvas-res")}
        if not owned:
            return
        uid = data.draw(st.sampled_from(sorted(owned)))
        slot = data.draw(st.sampled_from(sorted(SLOTS)))
        app = data.draw(st.sampled_from(MOVERS))  # as iOS, Thunderbird, Outlook, … write it
        _etag, ics = self.dav.items[owned[uid]]
        self.dav.store(owned[uid], client_edit(app, ics, start=SLOTS[slot]).decode())
        self.moved_to.add(slot)

    @rule()
    def person_wipes_the_calendar(self) -> None:
        owned = self.owned_on_server()
        for uid, href in owned.items():
            self.person_delete_uid(uid, href)
        if len(owned) >= 2:
            self.wiped = True

    def person_delete_uid(self, uid: str, href: str) -> None:
        self.dav.remove(href)
        aliased = {u: r for r, u in self.state.journal.aliases("ana").items()}
        res = aliased.get(uid) or next(
            (r for r in self.canvas.reservations if res_uid(r) == uid), None
        )
        if res is not None:
            self.deleted_by_person[res] = uid

    @rule(data=st.data())
    def person_breaks_an_event(self, data: st.DataObject) -> None:
        owned = self.owned_on_server()
        if not owned:
            return
        uid = data.draw(st.sampled_from(sorted(owned)))
        _etag, ics = self.dav.items[owned[uid]]
        broken = ics.replace("SUMMARY:", "SUMMARY:Edited ").replace("SEQUENCE:", "SEQUENCE:abc")
        if "SEQUENCE:abc" not in broken:
            broken = broken.replace("END:VEVENT", "SEQUENCE:abc\r\nEND:VEVENT")
        self.dav.store(owned[uid], broken)

    @rule(
        slot=st.sampled_from(sorted(SLOTS)),
        kind=st.sampled_from(["exact", "invitation", "team lunch"]),
    )
    def person_copies_an_open_slot(self, slot: int, kind: str) -> None:
        """An exact copy may book (reserve_by_copy is on); an invitation at the slot's time
        (ORGANIZER of someone else), or someone's event in 2030 that carries the slot's UID,
        must never book and never be touched."""
        href = f"/cal/copy-{slot}-{kind.replace(' ', '-')}.ics"
        if href in self.dav.items:
            return
        if kind == "exact":
            self.dav.store(href, slot_copy(slot, organizer=False))
            self.copied.add(slot)
            return
        when = datetime(2030, 1, 7, 12, tzinfo=UTC) if kind == "team lunch" else None
        ics = slot_copy(slot, organizer=True, when=when)
        self.foreign[href] = (self.dav.store(href, ics), ics)

    # --- what Canvas does, and how it fails ---------------------------------------------------

    @rule(data=st.data())
    def teacher_cancels_in_canvas(self, data: st.DataObject) -> None:
        mine = sorted(self.canvas.mine())
        if mine:  # the last one trips the "Canvas suddenly lists nothing" stop
            self.canvas.teacher_cancels(data.draw(st.sampled_from(mine)))

    @rule(slot=st.sampled_from(sorted(SLOTS)))
    def person_books_in_canvas(self, slot: int) -> None:
        self.canvas.books_in_canvas(slot)

    @rule()
    def sync(self) -> None:
        self.sync_now()

    @rule(
        canvas=st.sampled_from([None, "5xx_before", "5xx_after", "refuse", "crash_after"]),
        canvas_cannot_tell=st.booleans(),
        server_fails_to_list=st.booleans(),
        crash_after_writes=st.sampled_from([None, 0, 1, 2]),
        per_minute=st.sampled_from([0, 1, 1000]),
    )
    def sync_with_failures(
        self,
        canvas: str | None,
        canvas_cannot_tell: bool,
        server_fails_to_list: bool,
        crash_after_writes: int | None,
        per_minute: int,
    ) -> None:
        """A cycle where Canvas fails its next write (before or after doing it), cannot say
        what happened, the server fails to list, the process dies between two calendar
        writes, or the rate limit is reached — in any combination."""
        self.canvas.fault, self.canvas.verify_fails = canvas, canvas_cannot_tell
        self.dav.fail_next_read = server_fails_to_list
        self.dav.crash_after_writes = crash_after_writes
        self.limits = Limits(per_minute=per_minute, per_day=100_000)
        self.sync_now()
        self.canvas.fault, self.canvas.verify_fails = None, False
        self.dav.fail_next_read, self.dav.crash_after_writes = False, None
        self.limits = Limits(per_minute=1000, per_day=100_000)

    @rule(discard=st.booleans())
    def person_answers_a_safety_stop(self, discard: bool) -> None:
        self.wiped = False
        self.answer(discard)

    def answer(self, discard: bool) -> None:
        """As `calbridge writebacks approve [--discard]` does: it refuses to discard a
        "Canvas lists nothing" stop (there is nothing to put back), so settling one approves."""
        stop = self.state.stops.get(TARGET)
        if stop is not None and stop.kind == StopKind.CANVAS_EMPTY and discard:
            return
        self.state.stops.decide(TARGET, StopState.DISCARDED if discard else StopState.APPROVED)

    @rule(discard=st.booleans())
    def settle(self, discard: bool) -> None:
        """Faults gone and stops answered: everything must be carried out or put back."""
        self.canvas.fault, self.canvas.verify_fails = None, False
        self.dav.fail_next_read, self.dav.crash_after_writes = False, None
        self.limits = Limits(per_minute=1000, per_day=100_000)
        self.wiped = False
        for _ in range(6):
            stop = self.state.stops.get(TARGET)
            if stop is not None:
                self.answer(discard and stop.kind != StopKind.CANVAS_EMPTY)
            report = self.sync_now()
            assert report is not None
            if not report.actions and not report.commands and report.stop is None:
                break
        else:
            raise AssertionError(f"no convergence: {self.last}")
        assert self.state.journal.open_entries() == [], self.state.journal.open_entries()
        assert self.state.stops.get(TARGET) is None
        on_server = {self.uid_of(ics) for _, ics in self.dav.items.values()}
        for res, uid in self.deleted_by_person.items():
            assert res in self.canvas.cancelled or uid in on_server, (
                f"the deletion of {uid} was lost: reservation {res} is still booked and the "
                "event is gone"
            )
        self.deleted_by_person.clear()
        self.moved_to.clear()
        self.copied = {s for s in self.copied if f"/cal/copy-{s}-exact.ics" in self.dav.items}

    @staticmethod
    def uid_of(ics: str) -> str:
        match = re.search(r"^UID:(.*?)\r?$", ics, re.M)  # the event's: it comes before alarms'
        assert match is not None, ics
        return match.group(1)

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def nothing_doubled(self) -> None:
        assert not self.canvas.violations, self.canvas.violations

    @invariant()
    def unowned_events_untouched(self) -> None:
        for href, (etag, ics) in self.foreign.items():
            assert self.dav.items.get(href) == (etag, ics), f"calbridge changed {href}"
        status_hrefs = {s.href for s in self.state.caldav.load(TARGET).values()}
        assert not status_hrefs & set(self.foreign), "calbridge claims an event it did not write"

    @invariant()
    def deletions_not_forgotten(self) -> None:
        """Still booked in Canvas and gone from the calendar: then it must still be pending and
        visible somewhere the next cycle (or a person) will find it."""
        status = self.state.caldav.load(TARGET)
        token = self.state.caldav.sync_token(TARGET)
        stop = self.state.stops.get(TARGET)
        open_uids = {e.uid for e in self.state.journal.open_entries()}
        on_server = {self.uid_of(ics) for _, ics in self.dav.items.values()}
        for res, uid in self.deleted_by_person.items():
            if res in self.canvas.cancelled or uid in on_server:
                continue
            item = status.get(uid)
            removed_at = max((s for s, h in self.dav.log if item and h == item.href), default=0)
            seen_again = item is not None and (token is None or int(token) < removed_at)
            assert seen_again or uid in open_uids or stop is not None, (
                f"the deletion of {uid} is forgotten: reservation {res} still booked, event gone, "
                "nothing pending"
            )


TestTwoWaySync = TwoWaySync.TestCase
# CALBRIDGE_MACHINE_EXAMPLES=1000 for a deeper run than the suite's, with fresh random
# examples each time. The suite's default run is derandomized: the same examples on every
# run, so CI cannot fail at random on an example nobody chose.
_DEEP = os.environ.get("CALBRIDGE_MACHINE_EXAMPLES")
TestTwoWaySync.settings = settings(
    max_examples=int(_DEEP or "40"),
    stateful_step_count=30,
    deadline=None,
    derandomize=_DEEP is None,
)


class Draws:
    """Hypothesis's ``data`` for a replayed sequence: the values to draw, in order."""

    def __init__(self, *values: object) -> None:
        self.values = list(values)

    def draw(self, _strategy: object) -> object:
        return self.values.pop(0)


def test_a_move_and_a_copy_onto_the_same_slot_reserve_it_once() -> None:
    """Found by this machine (the shrunk example, replayed step by step): a booking moved
    onto an open slot and an exact copy of that slot's event both asked for the slot, and a
    reserve was sent after the rebook had taken it. One slot gets one Canvas write per cycle:
    the rebook (rebooks come first); the copy books nothing and stays as the person made it."""
    machine = TwoWaySync()
    try:
        booking = res_uid(1002)
        machine.person_copies_an_open_slot(kind="invitation", slot=101)
        machine.person_moves_a_booking(Draws(booking, 104, "thunderbird-move-new-york.ics"))  # type: ignore[arg-type]
        machine.person_copies_an_open_slot(kind="exact", slot=104)
        machine.person_breaks_an_event(Draws(booking))  # type: ignore[arg-type]
        machine.person_answers_a_safety_stop(discard=True)
        machine.person_breaks_an_event(Draws(booking))  # type: ignore[arg-type]
        machine.settle(discard=False)
        machine.nothing_doubled()
        writes = [
            p for k, p in machine.canvas.writes if 104 in (p.get("to_slot_id"), p.get("slot_id"))
        ]
        assert writes == [{"from_reservation_id": 1002, "to_slot_id": 104}]
        assert machine.dav.items["/cal/copy-104-exact.ics"][1] == slot_copy(104, organizer=False)
    finally:
        machine.teardown()


def test_a_canvas_empty_stop_after_a_crash_clears_once_approved() -> None:
    """Found by this machine (the example as Hypothesis printed it): a cancel whose answer
    was lost left the booking in the status after Canvas had cancelled it and the person had
    deleted its event; Canvas then listed nothing, and a "Canvas lists nothing" stop was held
    over an event no longer on the server — nothing could ever clear it. Only events the
    server still lists can hold such a stop; the one already gone is simply forgotten."""
    machine = TwoWaySync()
    wipe, answer = machine.person_wipes_the_calendar, machine.person_answers_a_safety_stop
    nothing = Draws()
    try:
        machine.person_moves_a_booking(Draws(res_uid(1000), 100, "davx5-colour-categories-lf.ics"))  # type: ignore[arg-type]
        wipe(), wipe(), machine.sync(), wipe(), wipe(), wipe(), wipe()
        answer(discard=False)
        wipe()
        machine.sync_with_failures("5xx_after", False, False, None, 1000)
        for _ in range(8):
            wipe()
        answer(discard=False)
        machine.person_moves_a_booking(nothing)  # type: ignore[arg-type]
        machine.person_copies_an_open_slot(kind="invitation", slot=103)
        machine.person_breaks_an_event(nothing)  # type: ignore[arg-type]
        machine.person_copies_an_open_slot(kind="exact", slot=100)
        machine.teacher_cancels_in_canvas(nothing)  # type: ignore[arg-type]
        answer(discard=False)
        answer(discard=True)
        machine.person_deletes_a_booking(nothing)  # type: ignore[arg-type]
        machine.sync_with_failures("crash_after", True, False, 0, 1000)
        assert machine.owned_on_server() == {}  # the one booking left in the status is gone
        report = machine.sync_now()  # nothing of calbridge's on the server to protect: no stop
        assert report is not None and report.stop is None
        machine.settle(discard=True)
    finally:
        machine.teardown()


def test_an_answered_canvas_empty_stop_does_not_come_back() -> None:
    """Canvas lists nothing while the calendar holds calbridge's bookings: the stop waits for
    a person. Once answered it stands for as long as the situation lasts — it is not held
    again every cycle — and clears when Canvas lists events again or nothing is left."""
    machine = TwoWaySync()
    try:
        bookings = tuple(sorted(res_uid(r) for r in machine.canvas.mine()))
        for res in list(machine.canvas.mine()):
            machine.canvas.teacher_cancels(res)
        report = machine.sync_now()
        assert report is not None and report.stop is not None
        assert (report.stop.kind, report.stop.uids) == (StopKind.CANVAS_EMPTY, bookings)
        # The CLI refuses --discard here; a discarded answer in the store keeps the events.
        machine.state.stops.decide(TARGET, StopState.DISCARDED)
        for _ in range(2):
            report = machine.sync_now()
            assert report is not None and report.stop is None and not report.actions
            stop = machine.state.stops.get(TARGET)
            assert stop is not None and stop.state is StopState.DISCARDED
        assert sorted(machine.owned_on_server()) == list(bookings)
        machine.state.stops.decide(TARGET, StopState.APPROVED)
        machine.dav.crash_after_writes = 1  # dies after the first delete: approved still
        assert machine.sync_now() is None
        stop = machine.state.stops.get(TARGET)
        assert stop is not None and stop.state is StopState.APPROVED
        report = machine.sync_now()
        assert report is not None and report.stop is None
        assert any(a.op == "delete" for a in report.actions)  # the rest, as approved
        assert machine.owned_on_server() == {}
        report = machine.sync_now()
        assert report is not None and report.stop is None and not report.actions
        assert machine.state.stops.get(TARGET) is None
        assert machine.owned_on_server() == {}
    finally:
        machine.teardown()


def test_a_discarded_canvas_empty_stop_clears_when_canvas_lists_again() -> None:
    machine = TwoWaySync()
    try:
        for res in list(machine.canvas.mine()):
            machine.canvas.teacher_cancels(res)
        machine.sync_now()
        machine.state.stops.decide(TARGET, StopState.DISCARDED)
        machine.sync_now()
        machine.canvas.books_in_canvas(104)
        report = machine.sync_now()
        assert report is not None and report.stop is None
        assert machine.state.stops.get(TARGET) is None
        assert [a.op for a in report.actions].count("delete") == 3
    finally:
        machine.teardown()


def test_two_bookings_moved_onto_one_slot_rebook_once() -> None:
    """Two moves at once are a mass change (2 of 3 bookings) and wait for a person; once
    approved, the slot goes to one of them (the lowest UID) and the other is put back."""
    machine = TwoWaySync()
    try:
        first, second = res_uid(1000), res_uid(1001)
        machine.person_moves_a_booking(Draws(first, 104, MOVERS[0]))  # type: ignore[arg-type]
        machine.person_moves_a_booking(Draws(second, 104, MOVERS[0]))  # type: ignore[arg-type]
        held = machine.sync_now()
        assert held is not None and held.stop is not None and machine.canvas.writes == []
        machine.answer(discard=False)
        report = machine.sync_now()
        assert report is not None and report.stop is None
        assert machine.canvas.writes == [
            (CommandKind.REBOOK, {"from_reservation_id": 1000, "to_slot_id": 104})
        ]
        assert [uid for uid, _why in report.restored] == [second]
        machine.nothing_doubled()
        machine.settle(discard=False)
        assert machine.canvas.mine() == {1001: 101, 1002: 102, 2000: 104}
    finally:
        machine.teardown()


@pytest.mark.parametrize("discard", [False, True], ids=["approve", "discard"])
def test_a_second_stop_on_top_of_an_answered_one_converges(discard: bool) -> None:
    """A person answers a safety stop, and before the next cycle makes another mass change.
    The new stop replaced the answered one and named only the new changes: answering it made
    the first changes count again, which raised a third stop naming only those — the two
    stops took turns for ever and nothing reached Canvas or the calendar. A stop raised on
    top of an answer names every change it holds, so one answer settles all of them."""
    machine = TwoWaySync()
    try:
        machine.canvas.books_in_canvas(103)
        machine.canvas.books_in_canvas(104)
        machine.sync_now()  # five bookings: two changes at once are 40%, a mass change
        first, second, third, fourth = (res_uid(r) for r in (1000, 1001, 1002, 2000))
        machine.person_moves_a_booking(Draws(first, 105, MOVERS[0]))  # type: ignore[arg-type]
        machine.person_deletes_a_booking(Draws(second))  # type: ignore[arg-type]
        held = machine.sync_now()
        assert held is not None and held.stop is not None
        assert held.stop.uids == (first, second)
        machine.answer(discard)
        machine.person_deletes_a_booking(Draws(third))  # type: ignore[arg-type]
        machine.person_deletes_a_booking(Draws(fourth))  # type: ignore[arg-type]
        again = machine.sync_now()
        assert again is not None and again.stop is not None
        assert again.stop.uids == tuple(sorted((first, second, third, fourth)))
        assert machine.canvas.writes == []
        machine.answer(discard)
        report = machine.sync_now()
        assert report is not None and report.stop is None
        assert machine.state.stops.get(TARGET) is None
        if discard:  # all four put back, Canvas untouched
            assert machine.canvas.writes == []
            assert {first, second, third, fourth} <= set(machine.owned_on_server())
        else:  # all four carried to Canvas, once each
            assert sorted(k.value for k, _ in machine.canvas.writes) == [
                "cancel",
                "cancel",
                "cancel",
                "rebook",
            ]
        machine.nothing_doubled()
        machine.settle(discard=discard)
    finally:
        machine.teardown()
