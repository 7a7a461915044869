"""kill -9 in the middle of pushing 500 events, then a rerun: no duplicates, all present."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers.dav import server_uids
from tests.helpers.servers import radicale

COUNT = 500


def test_kill_9_mid_push_then_rerun(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite3"
    state_url = f"sqlite:///{db}"
    with radicale(tmp_path / "radicale") as server:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        cmd = [sys.executable, "-m", "tests.dav.push_worker", server.url, state_url, str(COUNT)]
        worker = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
        collection = f"{server.home}canvas/"
        deadline = time.monotonic() + 60
        seen = 0
        while time.monotonic() < deadline:  # wait until roughly half the events are on the server
            time.sleep(0.2)
            listing = httpx.request("PROPFIND", collection, headers={"Depth": "1"})
            seen = listing.text.count(".ics<") if listing.status_code == 207 else 0
            if seen >= COUNT // 2:
                break
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        assert COUNT // 4 <= seen < COUNT, f"killed at {seen} events"
        with sqlite3.connect(db) as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rerun = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=180, check=True
        )
        assert "errors=0" in rerun.stdout
        uids = server_uids(server, collection)
        assert len(uids) == COUNT and len(set(uids)) == COUNT
        again = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=180, check=True
        )
        assert f"created=0 adopted=0 unchanged={COUNT} errors=0" in again.stdout
