"""Leases survive crashes (a dead holder on this host is taken over at once, a live one is
not), and what waits for a person — a safety stop, open write-backs — shows in /healthz even
when a one-off `calbridge sync` recorded it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from bridge.config import settings_from
from bridge.daemon.health import DaemonHealth
from bridge.daemon.service import LEASE_TTL, holder_alive, holder_id
from bridge.state import open_state
from bridge.state.journal import Limits
from bridge.state.stops import StopState


def test_a_lease_of_a_dead_process_is_taken_over_at_once(tmp_path: Path) -> None:
    state = open_state(f"sqlite:///{tmp_path / 's.sqlite3'}")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    assert state.acquire_lease("poll:ana", f"{host}:{dead.pid}", LEASE_TTL, holder_alive)
    # held, unexpired — but its process is gone: the rerun right after kill -9 proceeds
    assert state.acquire_lease("poll:ana", holder_id(), LEASE_TTL, holder_alive)
    # a live holder on this host keeps it
    assert state.acquire_lease("poll:bo", f"{host}:{os.getppid()}", LEASE_TTL, holder_alive)
    assert not state.acquire_lease("poll:bo", holder_id(), LEASE_TTL, holder_alive)
    # a holder on another host is trusted until its lease expires
    assert state.acquire_lease("poll:cy", "elsewhere:1", timedelta(seconds=-1), holder_alive)
    assert state.acquire_lease("poll:cy", holder_id(), LEASE_TTL, holder_alive)
    assert state.acquire_lease("poll:di", "elsewhere:1", LEASE_TTL, holder_alive)
    assert not state.acquire_lease("poll:di", holder_id(), LEASE_TTL, holder_alive)
    state.close()


def test_stops_and_open_writebacks_in_the_database_degrade_health(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    settings = settings_from(
        {
            "state": {"url": url},
            "accounts": [
                {"id": "ana", "canvas_url": "http://127.0.0.1:9", "token_env": "NO_SUCH_TOKEN"}
            ],
            "caldav": [
                {
                    "id": "phone",
                    "account": "ana",
                    "url": "http://127.0.0.1:9/",
                    "username": "ana",
                    "password_env": "NO_SUCH_PW",
                },
                {
                    "id": "laptop",
                    "account": "ana",
                    "url": "http://127.0.0.1:9/",
                    "username": "ana",
                    "password_env": "NO_SUCH_PW",
                },
            ],
        }
    )
    state = open_state(url)
    health = DaemonHealth(lambda: settings, state, lambda: True)
    assert "caldav:phone" not in health.health().components
    state.stops.hold(
        "phone", ("canvas-reservation-1@h", "canvas-reservation-2@h"), 2, 2, "mass_change"
    )
    state.journal.begin(
        key="k",
        account_id="ana",
        target_id="laptop",
        uid="u",
        action="cancel",
        params={"reservation_id": 1},
        limits=Limits(0, 0),  # rate-limited: deferred, visible
    )
    report = health.health()
    phone, laptop = report.components["caldav:phone"], report.components["caldav:laptop"]
    assert report.status == "degraded"
    assert phone["status"] == "degraded" and "writebacks approve phone" in phone["safety_stop"]
    assert laptop == {"status": "degraded", "open_writebacks": 1}
    state.stops.decide("phone", StopState.APPROVED)
    assert "approved" in health.health().components["caldav:phone"]["safety_stop_state"]
    state.stops.clear("phone")
    assert "caldav:phone" not in health.health().components
    state.close()
