"""Discovery is kept in the state store: a fresh `calbridge sync` with nothing to do costs at most
two requests at the server (counted by a proxy in front of the real server), and a calendar
that moved (301, 404, 410 at the stored URL) is discovered again, its events found where they
went, nothing duplicated."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from bridge.model.status import Collection, MemoryStatusStore, discovery_key
from bridge.state import open_state
from bridge.sync.run import CalendarSync
from tests.dav.counting_proxy import counting_proxy
from tests.helpers.dav import NOW, desired, event, server_uids, target_settings
from tests.helpers.servers import Server, radicale
from tests.helpers.sim import Sim

# Requests a fresh no-op sync may cost, at most (issue 12, P3: at most 2).
SERVER_NOOP = {"radicale": 1, "xandikos": 1, "sabredav": 2}


def write_config(tmp: Path, sim: Sim, dav_url: str, server: Server) -> Path:
    (tmp / "alice.token").write_text(sim.tokens["alice"] + "\n")
    (tmp / "dav.pw").write_text(server.password + "\n")
    config = tmp / "calbridge.toml"
    config.write_text(f"""
[state]
url = "sqlite:///{tmp / "state.sqlite3"}"
[logging]
level = "warning"
[[accounts]]
id = "alice"
canvas_url = "{sim.url}"
token_file = "{tmp / "alice.token"}"
[[caldav]]
id = "phone"
account = "alice"
url = "{dav_url}"
username = "{server.username}"
password_file = "{tmp / "dav.pw"}"
include = ["conferences", "reservations"]
""")
    return config


def sync(config: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "sync", "-c", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (account,) = json.loads(done.stdout)["accounts"]
    (target,) = account["targets"]
    return dict(target)


def test_a_fresh_noop_sync_costs_at_most_two_requests(
    live_sim: Sim, server: Server, tmp_path: Path
) -> None:
    with counting_proxy(server.url) as proxy:
        config = write_config(tmp_path, live_sim, proxy.url, server)
        first = sync(config)
        assert first["created"] > 3, first
        discovering = len(proxy.seen)
        proxy.reset()
        again = sync(config)  # a new process: nothing in memory
        assert (again["created"], again["updated"], again["deleted"]) == (0, 0, 0), again
        assert again["unchanged"] == first["created"]
        # The others answer without auth here: one REPORT with the stored token. SabreDAV asks
        # for Digest (a 401 first), and has no sync-collection: that is remembered, so the one
        # listing is a PROPFIND, without a refused REPORT before it.
        assert len(proxy.seen) == SERVER_NOOP[server.name], proxy.seen
        expected = {"PROPFIND"} if server.name == "sabredav" else {"REPORT"}
        assert {method for method, _ in proxy.seen} == expected
        assert discovering > len(proxy.seen) + 3  # what every fresh sync cost before


def _radicale_collection(root: Path, href_path: str) -> Path:
    return root / "collections" / "collection-root" / href_path.strip("/")


@pytest.mark.parametrize(
    ("answer", "warm"), [(404, False), (410, False), (301, False), (404, True)]
)
async def test_a_moved_calendar_is_found_again_and_nothing_is_duplicated(
    tmp_path: Path, answer: int, warm: bool
) -> None:
    """Moved between two `calbridge sync` runs (a fresh CalendarSync) or under a running daemon
    (the same one, which knew the old place in memory)."""
    root = tmp_path / "radicale"
    with radicale(root) as server, counting_proxy(server.url) as proxy:
        settings = replace(target_settings(server), url=proxy.url)
        state = open_state(f"sqlite:///{tmp_path / 'state.sqlite3'}")
        try:
            wanted = desired(event(1), event(2), event(3))
            daemon = CalendarSync(settings)
            first = await daemon.run(wanted, state.caldav, now=NOW)
            assert first.created == 3
            old = state.caldav.collection("phone")
            assert old is not None
            old_path = httpx.URL(old.url).path
            # The person's server moves the calendar (display name and events go with it).
            shutil.move(
                _radicale_collection(root, old_path), _radicale_collection(root, "/user/moved/")
            )
            if answer != 404:
                location = f"{proxy.url.rstrip('/')}/user/moved/" if answer == 301 else ""
                proxy.answer[old_path] = (answer, location)

            proxy.reset()
            calendar = daemon if warm else CalendarSync(settings)
            report = await calendar.run(wanted, state.caldav, now=NOW)
            assert report.failure is None and not report.item_errors, report
            assert (report.created, report.updated, report.deleted) == (0, 0, 0)
            assert report.unchanged == 3 and report.stop is None
            assert (proxy.seen[0][1], proxy.seen[-1][1]) == (old_path, "/user/moved/")
            now_at = state.caldav.collection("phone")
            assert now_at is not None and httpx.URL(now_at.url).path == "/user/moved/"
            assert all(
                s.href.startswith("/user/moved/") for s in state.caldav.load("phone").values()
            )
            assert state.caldav.sync_token("phone") is not None
            assert len(server_uids(server, now_at.url)) == 3

            proxy.reset()  # and from then on, the new place is used at once
            again = await calendar.run(wanted, state.caldav, now=NOW)
            assert again.unchanged == 3 and proxy.seen == [("REPORT", "/user/moved/")]
        finally:
            state.close()


async def test_changed_settings_are_discovered_again(server: Server) -> None:
    store = MemoryStatusStore()
    canvas = target_settings(server, "Canvas")
    await CalendarSync(canvas).run(desired(event(1)), store, now=NOW)
    was = store.collection("phone")
    assert was is not None
    assert was.found_for == discovery_key(canvas.url, canvas.username, "Canvas")
    renamed = target_settings(server, "Phone")
    fresh = MemoryStatusStore()  # the new calendar's own status, the old one's URL kept
    fresh.set_collection("phone", was)
    calendar = CalendarSync(renamed)
    report = await calendar.run(desired(event(2)), fresh, now=NOW)
    assert report.created == 1 and calendar.collection != was.url
    assert fresh.collection("phone") == Collection(
        str(calendar.collection),
        discovery_key(renamed.url, renamed.username, "Phone"),
        syncs=server.name != "sabredav",  # SabreDAV 1.8 has no sync-collection
    )
    assert server_uids(server, was.url) == ["canvas-reservation-1@canvas.test"]
