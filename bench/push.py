"""Pushing 1,000 events into Radicale, beside a raw sequential PUT loop on the same kind of
server in the same run (goal: at least 0.9 of its rate) and beside vdirsyncer syncing the same events;
then the request count of a sync with nothing to do, in the same process and in a fresh one
(counted at the server, by a proxy in front of it). Each contender gets a fresh Radicale.

Every contender's calendar is read back afterwards: the run stops with an error unless each
holds exactly the 1,000 events (by UID), so a contender that exits 0 having written less is
not timed as if it had done the work."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bridge.dav.remote import href_for
from bridge.dav.webdav import Dav
from bridge.model.status import Collection, MemoryStatusStore, discovery_key
from bridge.sync.run import CalendarSync
from tests.dav.counting_proxy import counting_proxy
from tests.helpers.dav import NOW, desired, event
from tests.helpers.options import target_settings
from tests.helpers.servers import radicale

COUNT = 1000


class BenchError(SystemExit):
    def __init__(self, message: str) -> None:
        super().__init__(f"bench/push.py: {message}")


def uids_in(collection: str) -> set[str]:
    """The UIDs the server holds in ``collection``, read back over CalDAV."""

    async def read() -> set[str]:
        dav = Dav(
            collection, httpx.BasicAuth("user", "pw"), target="bench", timeout=60, max_parallel=1
        )
        try:
            hrefs = list((await dav.list_all()).etags)
            bodies = await dav.multiget(hrefs) if hrefs else {}
        finally:
            await dav.aclose()
        return {m for _, data in bodies.values() for m in re.findall(r"^UID:(.+?)\r?$", data, re.M)}

    return asyncio.run(read())


def same_events(who: str, collection: str, expected: set[str]) -> None:
    found = uids_in(collection)
    if found != expected:
        raise BenchError(
            f"{who} left {len(found)} events in {collection}, {len(found & expected)} of the "
            f"{len(expected)} expected; its time would not measure the same work"
        )


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


async def calbridge_push(url: str, wanted: dict) -> tuple[float, int, str]:  # type: ignore[type-arg]
    calendar = CalendarSync(target_settings("bench", url, calendar="calbridge"))
    started = time.perf_counter()
    report = await calendar.run(wanted, STORE, now=NOW)
    elapsed = time.perf_counter() - started
    if report.created != COUNT:
        raise BenchError(f"calbridge created {report.created} of {COUNT}: {report.item_errors[:3]}")
    noop = await calendar.run(wanted, STORE, now=NOW)
    assert calendar.collection is not None
    return elapsed, noop.requests, calendar.collection


async def fresh_noop(url: str, wanted: dict) -> int:  # type: ignore[type-arg]
    """A new CalendarSync, as a fresh `calbridge sync` makes: only the state store is kept."""
    report = await CalendarSync(target_settings("bench", url, calendar="calbridge")).run(
        wanted, STORE, now=NOW
    )
    if report.created or report.updated or report.deleted:
        raise BenchError(f"the no-op sync did something: {report}")
    return report.unchanged


STORE = MemoryStatusStore()


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
        expected = set(wanted)
        with radicale(Path(tmp) / "r1") as server:
            raw = raw_put_loop(server.home, items)
            same_events("the raw PUT loop", f"{server.home}raw/", expected)
        with radicale(Path(tmp) / "r2") as server:
            ours, noop_requests, collection = asyncio.run(calbridge_push(server.url, wanted))
            same_events("calbridge", collection, expected)
            with counting_proxy(server.url) as proxy:
                # The pushes are timed without the proxy (it would slow calbridge alone); for
                # counting, the stored calendar URL is the same path through the proxy.
                path = httpx.URL(collection).raw_path.decode()
                STORE.set_collection(
                    "bench",
                    Collection(
                        proxy.url.rstrip("/") + path,
                        discovery_key(proxy.url, "user", "calbridge"),
                    ),
                )
                if asyncio.run(fresh_noop(proxy.url, wanted)) != COUNT:
                    raise BenchError("the fresh no-op sync did not find every event unchanged")
                fresh_requests = len(proxy.seen)
        with radicale(Path(tmp) / "r3") as server:
            peer = vdirsyncer(server.home, items, Path(tmp))
            same_events("vdirsyncer", f"{server.home}vdirsyncer/", expected)
    print(f"{COUNT} events into Radicale 3.9 (a fresh server and calendar each), loopback")
    print(f"raw sequential PUT loop: {raw:6.2f} s  {COUNT / raw:6.0f} events/s")
    print(
        f"calbridge push:          {ours:6.2f} s  {COUNT / ours:6.0f} events/s  = {raw / ours:.2f} of the raw loop's rate (goal >= 0.9)"
    )
    print(
        f"vdirsyncer sync:         {peer:6.2f} s  {COUNT / peer:6.0f} events/s  (calbridge is {peer / ours:.1f}x faster)"
    )
    print(
        f"no-op sync: {noop_requests} request(s) in the same process; {fresh_requests} at the "
        "server from a fresh one (goal <= 2)"
    )
    print("each calendar was read back: exactly the same events in all three")


if __name__ == "__main__":
    main()
