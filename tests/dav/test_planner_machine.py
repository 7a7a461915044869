"""A hypothesis state machine over the pure planner: Canvas changes, person edits, foreign
events and crashes (a plan only partly carried out) in any order always converge — a second
plan is empty — without touching events calbridge does not own or deleting on a failed poll."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bridge.mapping import CalEvent, EventVersion, render_event_ics
from bridge.model.status import ItemStatus
from bridge.sync.decide import Context, decide
from bridge.sync.plan import (
    Adopt,
    Create,
    Delete,
    DesiredItem,
    Forget,
    Plan,
    RemoteItem,
    Update,
    plan,
)

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
UIDS = [f"canvas-reservation-{n}@c" for n in range(5)]
FOREIGN = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:mine@phone\r\nDTSTAMP:20260301T000000Z\r\nDTSTART:20260305T090000Z\r\nSUMMARY:Dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"


def desired_item(uid: str, version: int) -> DesiredItem:
    start = NOW + timedelta(days=1, hours=UIDS.index(uid))
    event = CalEvent(
        uid, "reservation", f"Office hours v{version}", start, start + timedelta(minutes=20)
    )
    h = event.content_hash()
    return DesiredItem(uid, render_event_ics(event, EventVersion(uid, h, version, NOW, NOW)), h)


class Sync(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.canvas: dict[str, int] = {UIDS[0]: 0, UIDS[1]: 0}  # uid -> version Canvas wants
        self.server: dict[str, tuple[str, str]] = {
            "/cal/mine.ics": ("e0", FOREIGN)
        }  # href -> (etag, ics)
        self.status: dict[str, ItemStatus] = {}
        self.etags = itertools.count(1)

    def desired(self) -> dict[str, DesiredItem]:
        return {uid: desired_item(uid, v) for uid, v in self.canvas.items()}

    def actual(self) -> dict[str, RemoteItem]:
        out = {}
        for href, (etag, ics) in self.server.items():
            uid = ics.split("UID:", 1)[1].split("\r\n", 1)[0]
            out[href] = RemoteItem(href, etag, uid, ics)
        return out

    def run_plan(self, keep: float) -> None:
        result = plan(self.desired(), self.actual(), self.status, NOW, allow_empty=True)
        decision = decide(result, Context("t", "", None, {}, {}, NOW))
        actions = Plan(decision.actions).ordered()
        for action in actions[: int(len(actions) * keep)]:  # a crash may cut the plan short
            if isinstance(action, Create):
                href = f"/cal/{action.uid}.ics"
                etag = f"e{next(self.etags)}"
                self.server[href] = (etag, action.ics)
                self.status[action.uid] = ItemStatus(
                    action.uid, href, etag, action.content_hash, action.ics
                )
            elif isinstance(action, Update):
                etag = f"e{next(self.etags)}"
                self.server[action.href] = (etag, action.ics)
                self.status[action.uid] = ItemStatus(
                    action.uid, action.href, etag, action.content_hash, action.ics
                )
            elif isinstance(action, Adopt):
                self.status[action.uid] = ItemStatus(
                    action.uid, action.href, action.etag, action.content_hash, action.ics
                )
            elif isinstance(action, Delete):
                assert action.href != "/cal/mine.ics", "deleted an event calbridge does not own"
                self.server.pop(action.href, None)
                self.status.pop(action.uid, None)
            elif isinstance(action, Forget):
                self.status.pop(action.uid, None)

    @rule(uid=st.sampled_from(UIDS))
    def canvas_adds_or_changes(self, uid: str) -> None:
        self.canvas[uid] = self.canvas.get(uid, -1) + 1

    @rule(uid=st.sampled_from(UIDS))
    def canvas_removes(self, uid: str) -> None:
        if len(self.canvas) > 1:
            self.canvas.pop(uid, None)

    @rule(uid=st.sampled_from(UIDS))
    def person_deletes(self, uid: str) -> None:
        mine = self.status.get(uid)
        if mine:
            self.server.pop(mine.href, None)

    @rule(uid=st.sampled_from(UIDS), text=st.sampled_from(["Renamed", "Moved, with; punctuation"]))
    def person_edits(self, uid: str, text: str) -> None:
        mine = self.status.get(uid)
        if mine and mine.href in self.server:
            _, ics = self.server[mine.href]
            edited = ics.replace(
                "SUMMARY:Office hours",
                f"SUMMARY:{text.replace(',', chr(92) + ',').replace(';', chr(92) + ';')}",
            )
            self.server[mine.href] = (
                f"e{next(self.etags)}",
                edited.replace("END:VEVENT", "CATEGORIES:Mine\r\nEND:VEVENT"),
            )

    @rule(keep=st.sampled_from([0.0, 0.5, 1.0]))
    def sync(self, keep: float) -> None:
        self.run_plan(keep)

    @rule()
    def failed_poll_deletes_nothing(self) -> None:
        before = dict(self.server)
        result = plan(None, self.actual(), self.status, NOW)
        assert not any(isinstance(a, Delete) for a in result.actions)
        assert self.server == before

    @invariant()
    def converges(self) -> None:
        for _ in range(3):
            self.run_plan(1.0)
        again = plan(self.desired(), self.actual(), self.status, NOW, allow_empty=True)
        assert again.empty, again
        uids = [ics.split("UID:", 1)[1].split("\r\n", 1)[0] for _, ics in self.server.values()]
        assert len(uids) == len(set(uids)), "duplicate UID on the server"
        assert set(uids) == set(self.canvas) | {"mine@phone"}
        assert self.server["/cal/mine.ics"] == ("e0", FOREIGN)


TestSync = Sync.TestCase
TestSync.settings = settings(max_examples=60, stateful_step_count=20, deadline=None)
