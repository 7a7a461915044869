"""One contract, three real servers (Radicale, Xandikos, SabreDAV), all started by the tests."""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from pathlib import Path

import httpx
import icalendar
import pytest

from bridge.dav.discovery import TargetSettings, check_target
from bridge.errors import CalDAVAuthError, SafetyAbort
from bridge.model.status import MemoryStatusStore
from bridge.sync.run import CalendarSync
from tests.helpers.dav import NOW, auth, desired, event, server_uids, target_settings
from tests.helpers.servers import Server, sabredav


async def test_create_noop_update_delete(server: Server) -> None:
    calendar, store = CalendarSync(target_settings(server)), MemoryStatusStore()
    first = await calendar.run(desired(*[event(i) for i in range(5)]), store, now=NOW)
    assert first.created == 5 and not first.errors
    assert calendar.collection is not None
    assert sorted(server_uids(server, calendar.collection)) == sorted(
        f"canvas-reservation-{i}@canvas.test" for i in range(5)
    )
    noop = await calendar.run(desired(*[event(i) for i in range(5)]), store, now=NOW)
    assert (noop.created, noop.updated, noop.deleted, noop.unchanged) == (0, 0, 0, 5)
    assert noop.requests <= 2
    changed = await calendar.run(
        desired(*[event(i) for i in range(4)], event(4, "Moved office hours")), store, now=NOW
    )
    assert changed.updated == 1 and changed.created == 0
    removed = await calendar.run(desired(*[event(i) for i in range(4)]), store, now=NOW)
    assert removed.deleted == 1
    assert len(server_uids(server, calendar.collection)) == 4


async def test_calendar_is_created_once_and_found_again(server: Server) -> None:
    store = MemoryStatusStore()
    first = CalendarSync(target_settings(server, "Canvas bookings"))
    await first.run(desired(event(1)), store, now=NOW)
    again = CalendarSync(target_settings(server, "Canvas bookings"))
    report = await again.run(desired(event(1)), store, now=NOW)
    assert again.collection == first.collection and report.created == 0 and report.unchanged == 1
    assert "credentials accepted" in await check_target(target_settings(server, "Canvas bookings"))


async def test_events_it_does_not_own_are_never_touched(server: Server) -> None:
    calendar, store = CalendarSync(target_settings(server)), MemoryStatusStore()
    await calendar.run(desired(event(1)), store, now=NOW)
    assert calendar.collection is not None
    foreign = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//phone//EN\r\nBEGIN:VEVENT\r\nUID:dentist@phone\r\nDTSTAMP:20260301T000000Z\r\nDTSTART:20260305T090000Z\r\nDTEND:20260305T100000Z\r\nSUMMARY:Dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    with httpx.Client(auth=auth(server)) as http:
        assert http.put(
            calendar.collection + "dentist.ics",
            content=foreign,
            headers={"Content-Type": "text/calendar"},
        ).status_code in (201, 204)
    report = await calendar.run(
        desired(event(2)), store, now=NOW
    )  # event 1 gone from Canvas, event 2 new
    assert report.deleted == 1 and report.created == 1
    assert sorted(server_uids(server, calendar.collection)) == [
        "canvas-reservation-2@canvas.test",
        "dentist@phone",
    ]


async def test_person_edits_are_restored_and_additions_kept(server: Server) -> None:
    calendar, store = CalendarSync(target_settings(server)), MemoryStatusStore()
    await calendar.run(desired(event(1)), store, now=NOW)
    mine = store.load("phone")["canvas-reservation-1@canvas.test"]
    assert calendar.collection is not None
    cal = icalendar.Calendar.from_ical(mine.ics)
    vevent = cal.walk("VEVENT")[0]
    vevent["SUMMARY"] = "My renamed event"
    vevent.add("CATEGORIES", ["Study"])
    vevent.add("X-APPLE-TRAVEL-ADVISORY-BEHAVIOR", "AUTOMATIC")
    alarm = icalendar.Alarm()
    alarm.add("ACTION", "DISPLAY")
    alarm.add("DESCRIPTION", "Leave now")
    alarm.add("TRIGGER", timedelta(minutes=-30))
    vevent.add_component(alarm)
    with httpx.Client(auth=auth(server)) as http:
        put = http.put(
            httpx.URL(calendar.collection).join(mine.href),
            content=cal.to_ical(),
            headers={"Content-Type": "text/calendar"},
        )
        assert put.status_code == 204  # replaces what calbridge wrote, on every server
    report = await calendar.run(desired(event(1)), store, now=NOW)
    assert report.person_changed == 1 and report.updated == 1
    with httpx.Client(auth=auth(server)) as http:
        back = icalendar.Calendar.from_ical(
            http.get(httpx.URL(calendar.collection).join(mine.href)).text
        ).walk("VEVENT")[0]
    assert str(back["SUMMARY"]) == "Office hours 1"  # Canvas owns the title
    assert "Study" in [
        str(c)
        for cats in (
            back.get("CATEGORIES")
            if isinstance(back.get("CATEGORIES"), list)
            else [back.get("CATEGORIES")]
        )
        for c in cats.cats
    ]
    assert str(back["X-APPLE-TRAVEL-ADVISORY-BEHAVIOR"]) == "AUTOMATIC"
    assert [str(a["DESCRIPTION"]) for a in back.walk("VALARM")] == ["Leave now"]
    settled = await calendar.run(desired(event(1)), store, now=NOW)
    assert settled.updated == 0 and settled.person_changed == 0


async def test_person_deletion_is_restored_unless_hidden(server: Server) -> None:
    calendar, store = CalendarSync(target_settings(server)), MemoryStatusStore()
    wanted = desired(event(1), event(2))
    await calendar.run(wanted, store, now=NOW)
    assert calendar.collection is not None
    status = store.load("phone")
    with httpx.Client(auth=auth(server)) as http:
        for uid in status:
            assert http.delete(
                httpx.URL(calendar.collection).join(status[uid].href)
            ).status_code in (
                200,
                204,
            )
    hidden = {
        "canvas-reservation-2@canvas.test": wanted["canvas-reservation-2@canvas.test"].content_hash
    }
    report = await calendar.run(wanted, store, now=NOW, hidden=hidden)
    assert report.person_deleted == 2 and report.created == 1
    assert server_uids(server, calendar.collection) == ["canvas-reservation-1@canvas.test"]


async def test_failed_or_empty_canvas_deletes_nothing(server: Server) -> None:
    calendar, store = CalendarSync(target_settings(server)), MemoryStatusStore()
    await calendar.run(desired(event(1), event(2)), store, now=NOW)
    failed = await calendar.run(None, store, now=NOW)
    assert failed.deleted == 0 and failed.unchanged == 2
    with pytest.raises(SafetyAbort, match="suddenly lists nothing"):
        await calendar.run({}, store, now=NOW)
    assert calendar.collection is not None and len(server_uids(server, calendar.collection)) == 2


async def test_past_events_are_kept(server: Server) -> None:
    calendar, store = CalendarSync(target_settings(server)), MemoryStatusStore()
    past = event(1, start=NOW - timedelta(days=3))
    await calendar.run(desired(past, event(2)), store, now=NOW)
    report = await calendar.run(desired(event(2)), store, now=NOW)
    assert report.deleted == 0 and report.unchanged == 2


async def test_concurrent_change_gives_412_and_no_blind_overwrite(server: Server) -> None:
    calendar, store = CalendarSync(target_settings(server)), MemoryStatusStore()
    await calendar.run(desired(event(1)), store, now=NOW)
    mine = store.load("phone")["canvas-reservation-1@canvas.test"]
    assert calendar.collection is not None
    # the server copy changes after our listing but before our write: simulate with a stale status ETag
    stale = type(mine)(mine.uid, mine.href, '"stale-etag"', mine.content_hash, mine.ics)
    store.apply("phone", [stale], [])
    store.set_sync_token("phone", None)
    report = await calendar.run(desired(event(1, "Changed in Canvas")), store, now=NOW)
    # With the token reset, the full listing shows the server's ETag: calbridge re-reads the
    # object before writing, so the stale ETag is never sent (on every server).
    assert (report.updated, report.conflicts) == (1, [])
    final = await calendar.run(desired(event(1, "Changed in Canvas")), store, now=NOW)
    assert final.conflicts == [] and final.errors == []
    with httpx.Client(auth=auth(server)) as http:
        back = icalendar.Calendar.from_ical(
            http.get(httpx.URL(calendar.collection).join(mine.href)).text
        ).walk("VEVENT")[0]
    assert str(back["SUMMARY"]) == "Changed in Canvas"


async def test_wrong_password_is_a_clear_error_without_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SabreDAV is the one of the three servers that runs with authentication (Digest) here."""
    caplog.set_level(logging.DEBUG)
    with sabredav(tmp_path) as server:
        settings = target_settings(server)
        await _refused(settings, caplog)


async def _refused(settings: TargetSettings, caplog: pytest.LogCaptureFixture) -> None:
    bad = dataclasses.replace(settings, password="wrong-password-xyz")
    with pytest.raises(CalDAVAuthError) as info:
        await CalendarSync(bad).run(desired(event(1)), MemoryStatusStore(), now=NOW)
    assert "refused the username or password" in str(info.value)
    assert "wrong-password-xyz" not in str(info.value) + caplog.text + repr(bad)
