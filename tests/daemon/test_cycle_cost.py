"""What one cycle costs: Canvas requests only for what the outputs show, one HTTP client per
Canvas origin shared by the accounts, and an unchanged cycle that rewrites nothing.

The real cycle (:class:`Syncer`) against the simulator over loopback HTTP; requests counted
from the simulator's own log, database writes from the SQL the state store sends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from bridge.config import settings_from
from bridge.daemon import cycle
from bridge.daemon.cycle import Syncer
from bridge.daemon.skip import Work
from bridge.model import feed as feed_model
from bridge.state import StateStore, open_state
from bridge.web.served import ServedFeeds
from tests.conftest import Sim

STUDENT_FEED = ["conferences", "reservations"]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Bed:
    sim: Sim
    state: StateStore
    syncer: Syncer
    clock: Clock
    writes: list[str]

    async def cycle(self) -> dict[str, int]:
        """One cycle of every account; the simulator's requests by route (and ``total``)."""
        self.sim.world.stats.reset()
        self.writes.clear()
        for account in self.syncer.settings.accounts:
            result = await self.syncer.sync_account(account)
            assert result.ok, result.error
        stats = self.sim.world.stats
        assert set(stats.by_status) == {200}
        return {"total": stats.total, **stats.by_route}

    def tables_written(self) -> set[str]:
        return {w.split()[2 if w.startswith(("INSERT", "DELETE")) else 1] for w in self.writes}


def _bed(
    sim: Sim, tmp: Path, monkeypatch: pytest.MonkeyPatch, accounts: dict[str, list[str]]
) -> Iterator[Bed]:
    """``accounts``: sample user -> the include list of its one feed."""
    for name in accounts:
        monkeypatch.setenv(f"TOKEN_{name.upper()}", sim.tokens[name])
    settings = settings_from(
        {
            "state": {"url": f"sqlite:///{tmp / 'state.sqlite3'}"},
            "accounts": [
                {"id": name, "canvas_url": sim.url, "token_env": f"TOKEN_{name.upper()}"}
                for name in accounts
            ],
            "feeds": [
                {"id": name, "account": name, "include": include}
                for name, include in accounts.items()
            ],
        }
    )
    state = open_state(settings.state.url or "")
    writes: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        text = " ".join(statement.split()).upper()
        if text.startswith(("INSERT", "UPDATE", "DELETE")):
            writes.append(text)

    event.listen(state.engine, "before_cursor_execute", record)
    clock = Clock()
    yield Bed(sim, state, Syncer(settings, state, ServedFeeds(), clock=clock), clock, writes)
    state.close()


@pytest.fixture
def student(live_sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bed]:
    yield from _bed(live_sim, tmp_path, monkeypatch, {"alice": STUDENT_FEED})


async def test_a_student_feed_polls_conferences_and_reservable_groups_and_users_self_once(
    student: Bed,
) -> None:
    first = await student.cycle()
    assert first == {
        "total": 3,
        "GET /api/v1/users/self": 1,
        "GET /api/v1/conferences": 1,
        "GET /api/v1/appointment_groups": 1,  # reservable only: no output shows managed slots
    }
    second = await student.cycle()
    assert second == {
        "total": 2,
        "GET /api/v1/conferences": 1,
        "GET /api/v1/appointment_groups": 1,
    }
    student.clock.now += timedelta(hours=25)  # at most a day without asking who this is
    assert (await student.cycle())["GET /api/v1/users/self"] == 1
    await student.syncer.aclose()


async def test_another_process_reuses_the_profile_one_fetched_for_a_day(student: Bed) -> None:
    """A replica syncing an account for the first time (or after a restart) reads who the
    token belongs to from the store: no ``/users/self`` while the stored one is fresh."""
    assert (await student.cycle())["GET /api/v1/users/self"] == 1
    await student.syncer.aclose()
    settings = student.syncer.settings
    student.syncer = Syncer(settings, student.state, ServedFeeds(), clock=student.clock)
    assert "GET /api/v1/users/self" not in await student.cycle()
    saved = json.loads(student.state.load_snapshot("alice") or "{}")
    assert saved["user"]["name"] == "Alice Liddell"
    await student.syncer.aclose()
    student.clock.now += timedelta(hours=25)  # stored a day ago: asked again, and shared
    student.syncer = Syncer(settings, student.state, ServedFeeds(), clock=student.clock)
    assert (await student.cycle())["GET /api/v1/users/self"] == 1
    await student.syncer.aclose()
    student.syncer = Syncer(settings, student.state, ServedFeeds(), clock=student.clock)
    assert "GET /api/v1/users/self" not in await student.cycle()
    await student.syncer.aclose()


async def test_manageable_groups_are_polled_when_an_output_shows_managed_slots(
    live_sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for bed in _bed(live_sim, tmp_path, monkeypatch, {"teacher": ["conferences", "managed_slots"]}):
        await bed.cycle()
        assert (await bed.cycle())["GET /api/v1/appointment_groups"] == 2  # both scopes
        feed = bed.syncer.feeds.get("teacher")
        assert feed is not None and b"BEGIN:VEVENT" in feed.body
        await bed.syncer.aclose()


async def test_a_new_token_is_asked_who_it_belongs_to(
    student: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    await student.cycle()
    monkeypatch.setenv("TOKEN_ALICE", student.sim.tokens["bob"])  # the token file was replaced
    assert (await student.cycle())["GET /api/v1/users/self"] == 1
    saved = json.loads(student.state.load_snapshot("alice") or "{}")
    assert saved["user"]["name"] == "Bob Dylan"
    await student.syncer.aclose()


async def test_an_unchanged_cycle_writes_no_snapshot_feed_or_version_rows(student: Bed) -> None:
    await student.cycle()
    assert {"ACCOUNT_SNAPSHOTS", "RENDERED_FEEDS", "EVENT_VERSIONS"} <= student.tables_written()
    before = student.syncer.feeds.get("alice")
    assert before is not None

    student.clock.now += timedelta(minutes=5)
    await student.cycle()
    assert student.writes == []  # last_success_at waits to be written with other accounts'
    await student.syncer.statuses.flush()
    assert student.tables_written() == {"ACCOUNT_STATUS"}, student.writes
    status = student.state.account_statuses()["alice"]
    assert status.last_success_at == student.clock.now
    after = student.syncer.feeds.get("alice")
    assert after is not None
    assert (after.body, after.etag, after.last_modified) == (
        before.body,
        before.etag,
        before.last_modified,
    )
    assert after.refreshed_at == student.clock.now  # served as refreshed all the same

    # A change in Canvas is saved at once.
    world = student.sim.world
    course = next(iter(world.courses.values()))
    alice = world.user_by_token(student.sim.tokens["alice"])
    assert alice is not None
    start = world.clock.now() + timedelta(days=2)
    world.add_conference(
        course,
        "Added after the first cycle",
        start_at=start,
        end_at=start + timedelta(hours=1),
        participants={alice.id: "invitee"},
    )
    await student.cycle()
    assert {"ACCOUNT_SNAPSHOTS", "RENDERED_FEEDS"} <= student.tables_written()
    changed = student.syncer.feeds.get("alice")
    assert changed is not None and b"Added after the first cycle" in changed.body
    await student.syncer.aclose()


async def test_an_unchanged_account_skips_its_work_and_a_change_in_canvas_does_not(
    student: Bed,
) -> None:
    """The same pages from Canvas: no parse, no render, no feed or snapshot write, the same
    ETag. One conference renamed in Canvas: the full cycle runs and the feed shows it."""
    alice = student.syncer.settings.accounts[0]
    first = await student.syncer.sync_account(alice)
    assert first.work is Work.FIRST
    before = student.syncer.feeds.get("alice")
    assert before is not None

    student.clock.now += timedelta(minutes=5)
    student.writes.clear()
    same = await student.syncer.sync_account(alice)
    assert same.ok and same.work is Work.SKIP
    assert same.feeds[0].events == first.feeds[0].events > 0
    assert student.writes == []  # nothing but its poll time, which waits (see StatusBatch)
    after = student.syncer.feeds.get("alice")
    assert after is not None and (after.etag, after.body) == (before.etag, before.body)
    assert after.refreshed_at == student.clock.now

    world = student.sim.world
    user = world.user_by_token(student.sim.tokens["alice"])
    assert user is not None
    conference = next(c for c in world.conferences.values() if user.id in c.participants)
    conference.title = "Renamed in Canvas"
    student.clock.now += timedelta(minutes=5)
    changed = await student.syncer.sync_account(alice)
    assert changed.work is Work.CANVAS and changed.feeds[0].changed
    renamed = student.syncer.feeds.get("alice")
    assert renamed is not None and b"Renamed in Canvas" in renamed.body
    assert renamed.etag != before.etag

    student.syncer.feeds.publish(before, "another-secret")  # another process served its own
    assert (await student.syncer.sync_account(alice)).work is Work.FEED
    assert (await student.syncer.sync_account(alice)).work is Work.SKIP

    # The account's config replaced (SIGHUP) by an equal one: compared by value, still skipped;
    # the account gone from the config: its memory goes with it (then a full cycle again).
    settings = student.syncer.settings
    student.syncer.settings = settings.model_copy(deep=True)
    assert (await student.syncer.sync_account(alice)).work is Work.SKIP
    student.syncer.settings = settings.model_copy(update={"accounts": [], "feeds": []})
    student.syncer.settings = settings
    assert (await student.syncer.sync_account(alice)).work is Work.FIRST
    await student.syncer.aclose()


async def test_a_restart_serves_the_last_poll_time_as_the_refresh_time(student: Bed) -> None:
    await student.cycle()
    student.clock.now += timedelta(minutes=30)
    await student.cycle()  # unchanged: the stored feed row keeps its first refresh time
    await student.syncer.aclose()
    restarted = Syncer(student.syncer.settings, student.state, ServedFeeds())
    assert restarted.publish_stored() == 1
    feed = restarted.feeds.get("alice")
    assert feed is not None and feed.refreshed_at == student.clock.now


async def test_accounts_on_one_canvas_share_one_http_client(
    live_sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for bed in _bed(
        live_sim, tmp_path, monkeypatch, {n: STUDENT_FEED for n in ("alice", "bob", "carol")}
    ):
        await bed.cycle()
        await bed.cycle()
        assert bed.syncer.pool.created == 1
        for name, full in (("alice", "Alice Liddell"), ("bob", "Bob Dylan")):
            saved = json.loads(bed.state.load_snapshot(name) or "{}")
            assert saved["user"]["name"] == full  # each request carried its own token
        await bed.syncer.aclose()


async def test_after_a_restart_an_unchanged_feed_body_is_held_once(
    student: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restart the served feed comes from the state store and the first cycle renders
    an equal body into the render cache: the feed then serves the cache's body, so an
    account's unchanged feed is not kept twice in memory."""
    # a feed large enough to keep a render cache and its plain body beside the gzipped one
    monkeypatch.setattr(cycle, "CACHED_FROM_EVENTS", 1)
    monkeypatch.setattr(feed_model, "PLAIN_KEPT_FROM", 1)
    await student.cycle()
    await student.syncer.aclose()
    restarted = Syncer(student.syncer.settings, student.state, ServedFeeds(), clock=student.clock)
    assert restarted.publish_stored() == 1
    loaded = restarted.feeds.get("alice")
    student.syncer = restarted
    await student.cycle()  # a full cycle (a new process), nothing changed in Canvas
    served = restarted.feeds.get("alice")
    assert loaded is not None and served is not None and served.body == loaded.body
    blocks = restarted._caches["alice"]._blocks
    joined = blocks._joined if blocks is not None else None
    assert joined is not None and served.plain is joined[2], "the body is held twice"
    await restarted.aclose()
