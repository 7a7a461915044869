"""Pushing 1,000 events into Radicale, beside a raw sequential PUT loop on the same kind of
server in the same run (goal: at least 0.9 of its rate) and beside vdirsyncer syncing the same events;
then the request count of a sync with nothing to do. Each contender gets a fresh Radicale."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bridge.config import CalDAVConfig
from bridge.dav.remote import href_for
from bridge.model.status import MemoryStatusStore
from bridge.sync.run import CalendarSync
from tests.helpers.dav import NOW, desired, event
from tests.helpers.servers import radicale

COUNT = 1000


def raw_put_loop(home: str, items: list[tuple[str, str]]) -> float:
    collection = f"{home}raw/"
    with httpx.Client(auth=("user", "pw")) as http:
        http.request("MKCALENDAR", collection)
        started = time.perf_counter()
        for uid, ics in items:
            put = http.put(
                collection + href_for(uid),
                content=ics,
                headers={"Content-Type": "text/calendar", "If-None-Match": "*"},
            )
            assert put.status_code == 201, put.status_code
        return time.perf_counter() - started


async def calbridge_push(url: str, wanted: dict) -> tuple[float, int]:  # type: ignore[type-arg]
    store = MemoryStatusStore()
    target = CalDAVConfig(
        id="bench",
        account="bench",
        url=url,
        username="user",
        password_env="UNUSED",
        calendar="calbridge",
    )
    calendar = CalendarSync(target.target_settings("pw"))
    started = time.perf_counter()
    report = await calendar.run(wanted, store, now=NOW)
    elapsed = time.perf_counter() - started
    assert report.created == COUNT, report.errors[:3]
    noop = await calendar.run(wanted, store, now=NOW)
    return elapsed, noop.requests


def vdirsyncer(home: str, items: list[tuple[str, str]], work: Path) -> float:
    folder = work / "vdir"
    folder.mkdir()
    for uid, ics in items:
        (folder / href_for(uid)).write_text(ics)
    config = work / "vdirsyncer.conf"
    config.write_text(f"""[general]
status_path = "{work / "status"}"
[pair bench]
a = "local"
b = "remote"
collections = null
conflict_resolution = "a wins"
[storage local]
type = "filesystem"
path = "{folder}"
fileext = ".ics"
[storage remote]
type = "caldav"
url = "{home}vdirsyncer/"
username = "user"
password = "pw"
""")
    with httpx.Client(auth=("user", "pw")) as http:
        http.request("MKCALENDAR", f"{home}vdirsyncer/")
    vds = str(Path(sys.executable).parent / "vdirsyncer")
    found = subprocess.run(
        [vds, "-c", str(config), "discover"], capture_output=True, input=b"y\n" * 4
    )
    if found.returncode:
        raise RuntimeError(f"vdirsyncer discover failed: {found.stderr[-800:]!r}")
    started = time.perf_counter()
    done = subprocess.run([vds, "-c", str(config), "sync"], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"vdirsyncer failed: {done.stderr[-800:]}")
    return time.perf_counter() - started


def main() -> None:
    wanted = desired(*[event(i) for i in range(COUNT)])
    items = [(uid, item.ics) for uid, item in wanted.items()]
    # A fresh server for each contender: Radicale slows down as its storage grows, so sharing one
    # would favour whoever goes first.
    with tempfile.TemporaryDirectory() as tmp:
        with radicale(Path(tmp) / "r1") as server:
            raw = raw_put_loop(server.home, items)
        with radicale(Path(tmp) / "r2") as server:
            ours, noop_requests = asyncio.run(calbridge_push(server.url, wanted))
        with radicale(Path(tmp) / "r3") as server:
            peer = vdirsyncer(server.home, items, Path(tmp))
    print(f"{COUNT} events into Radicale 3.9 (a fresh server and calendar each), loopback")
    print(f"raw sequential PUT loop: {raw:6.2f} s  {COUNT / raw:6.0f} events/s")
    print(
        f"calbridge push:          {ours:6.2f} s  {COUNT / ours:6.0f} events/s  = {raw / ours:.2f} of the raw loop's rate (goal >= 0.9)"
    )
    print(
        f"vdirsyncer sync:         {peer:6.2f} s  {COUNT / peer:6.0f} events/s  (calbridge is {peer / ours:.1f}x faster)"
    )
    print(f"no-op sync: {noop_requests} request(s) to the server")


if __name__ == "__main__":
    main()
