"""P7: how long a change in Canvas takes to be visible in the CalDAV calendar, with the daemon
running: a real `calbridge run` process, the Canvas simulator over HTTP on loopback, Radicale.

The appointment group Alice booked is renamed in the simulator, at a random moment of the
poll cycle, and the calendar is read (GET of the collection, every 50 ms) until the new name
is there. Each latency is printed against the poll interval (goal: at most interval + 2 s);
the run stops with an error if a change never shows or the daemon dies.

Usage: PYTHONPATH=. .venv/bin/python bench/latency.py [--interval 10] [--changes 4]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bridge.simulator.app import create_app
from bridge.simulator.sample import SAMPLE_TOKENS, sample_world
from bridge.simulator.server import serve_in_thread
from tests.helpers.servers import free_port, radicale

SLACK = 2.0  # seconds allowed beyond the poll interval


class BenchError(SystemExit):
    def __init__(self, message: str) -> None:
        super().__init__(f"bench/latency.py: {message}")


def write_config(work: Path, canvas: str, dav: str, interval: int) -> Path:
    (work / "alice.token").write_text(SAMPLE_TOKENS["alice"] + "\n")
    (work / "dav.pw").write_text("bench-pw\n")
    port = free_port()
    config = work / "calbridge.toml"
    config.write_text(f"""
[state]
url = "sqlite:///{work / "state.sqlite3"}"
[logging]
level = "warning"
[http]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{port + 1}"
[[accounts]]
id = "alice"
canvas_url = "{canvas}"
token_file = "{work / "alice.token"}"
poll_interval = "{interval}s"
[[caldav]]
id = "phone"
account = "alice"
url = "{dav}"
username = "alice"
password_file = "{work / "dav.pw"}"
include = ["conferences", "reservations"]
""")
    return config


def calendar_text(collection: str) -> str:
    response = httpx.get(collection, timeout=10)
    if response.status_code != 200:
        raise BenchError(f"GET {collection} answered {response.status_code}")
    return response.text.replace("\r\n ", "")


def wait_for(
    what: str, check: Callable[[], bool], daemon: subprocess.Popen[bytes], timeout: float
) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if daemon.poll() is not None:
            raise BenchError(f"the daemon exited ({daemon.returncode}) while waiting for {what}")
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    raise BenchError(f"{what}: not seen within {timeout:.0f} s")


def collection_of(state: Path) -> str:
    with sqlite3.connect(state) as con:
        row = con.execute("SELECT url FROM caldav_collections WHERE target_id = 'phone'").fetchone()
    if row is None:
        raise BenchError("the daemon has not found its calendar")
    return str(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=int, default=10, help="poll interval, seconds (>= 10)")
    parser.add_argument("--changes", type=int, default=4, help="changes to time")
    args = parser.parse_args()
    world = sample_world()
    office = next(g for g in world.appointment_groups.values() if g.title == "Office hours")
    with (
        tempfile.TemporaryDirectory(prefix="calbridge-latency-") as tmp,
        serve_in_thread(create_app(world)) as canvas,
        radicale(Path(tmp) / "radicale") as dav,
    ):
        work = Path(tmp)
        config = write_config(work, canvas.url, dav.url, args.interval)
        log = (work / "daemon.log").open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALBRIDGE_")}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            state = work / "state.sqlite3"

            def first_sync() -> bool:
                try:
                    return "SUMMARY:Office hours" in calendar_text(collection_of(state))
                except (BenchError, sqlite3.Error, httpx.TransportError):
                    return False

            wait_for("the first sync", first_sync, daemon, 120)
            collection = collection_of(state)
            latencies = []
            for n in range(1, args.changes + 1):
                time.sleep(random.uniform(0, args.interval))  # anywhere in the poll cycle
                title = f"Office hours (moved {n})"
                with world.lock:
                    office.title = title
                    office.updated_at = world.clock.now()
                seen = wait_for(
                    f"change {n}",
                    lambda t=title: f"SUMMARY:{t}" in calendar_text(collection),
                    daemon,
                    args.interval * 3 + 30,
                )
                latencies.append(seen)
                print(f"change {n}: visible in the calendar after {seen:5.2f} s", flush=True)
        finally:
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            log.close()
    worst, goal = max(latencies), args.interval + SLACK
    print(
        f"poll interval {args.interval} s: {len(latencies)} changes, mean "
        f"{sum(latencies) / len(latencies):.2f} s, worst {worst:.2f} s; goal <= interval + "
        f"{SLACK:.0f} s = {goal:.0f} s: {'ok' if worst <= goal else 'ABOVE GOAL'}"
    )


if __name__ == "__main__":
    main()
