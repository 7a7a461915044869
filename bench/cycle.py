"""Full sync cycles for many simulated users, with the Canvas simulator in another process.

``python bench/cycle.py [USERS ...]`` (default 100 1000). Each user is an account with a feed
of conferences and reservations; state in a temp SQLite. Users share courses of 20, each
course carrying GROUPS appointment groups and CONFERENCES conferences. Two cycles run one
after the other in one process, as the daemon does: the first from an empty state (and a
process that knows no user yet), the second with nothing changed in Canvas.

Printed per size: wall time, CPU seconds of this process and of the simulator's for the first
cycle (wall beyond the two CPU figures is waiting: other processes, disk), peak RSS of
this process, Canvas requests per user beside the minimum the outputs need (first cycle: with
``/users/self``; second: without), CPU milliseconds per unchanged user beside the same two
GETs per user sent by a bare shared httpx client (the floor this HTTP stack sets), and the
database writes of the second cycle. Before printing, it checks that the work was done: every answer
the simulator gave was a 200, it counted the requests calbridge counted, and every feed holds
exactly the events the simulator holds for its user. It exits 1 if a check fails.
The wall and CPU time of the unchanged cycle go to stderr as it ends, like the first's.
``BENCH_PROFILE=FILE`` writes a cProfile (CPU time) of the second cycle (the event loop's thread) there.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import math
import os
import resource
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

from bridge.config import Settings, settings_from
from bridge.daemon.cycle import CANVAS_POOL, Syncer
from bridge.state import open_state
from bridge.web.served import ServedFeeds

sys.path.insert(0, str(Path(__file__).parent))
from canvas_sim import SimProcess

GROUPS, CONFERENCES = 10, 5
# Accounts synced at once: as many as the daemon's shared Canvas pool has connections per
# origin (more would only queue for a connection); BENCH_CONCURRENCY to try another figure.
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", CANVAS_POOL.max_connections))
PROFILE = os.environ.get("BENCH_PROFILE")  # a file: cProfile of the second cycle goes there
PER_PAGE = 100


class CheckFailed(Exception):
    pass


def minimum(ask_user: bool) -> int:
    """Requests one poll needs for a conferences + reservations feed (``per_page=100``)."""

    def pages(n: int) -> int:
        return max(1, math.ceil(n / PER_PAGE))

    return int(ask_user) + pages(CONFERENCES) + pages(GROUPS)


def sim_stats(url: str, reset: bool = False) -> dict[str, Any]:
    """What the simulator served since the last reset; then reset it if asked."""
    with urllib.request.urlopen(f"{url}/_sim/stats", timeout=30) as answer:
        stats = dict(json.load(answer))
    if reset:
        request = urllib.request.Request(f"{url}/_sim/stats", method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()
    return stats


def sim_cpu(pid: int) -> float:
    """CPU seconds the simulator process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cycle(syncer: Syncer) -> list[int]:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(account: Any) -> int:
        async with limit:
            result = await syncer.sync_account(account)
            if not result.ok:
                raise CheckFailed(f"account {account.id}: {result.error}")
            return int(result.requests)

    return await asyncio.gather(*(one(a) for a in syncer.settings.accounts))


async def http_floor(url: str, tokens: list[str]) -> float:
    """CPU seconds of this process for the unchanged cycle's two GETs per user sent with a bare
    shared httpx client and nothing else (no parsing, no state): the reference for the
    unchanged cycle's cost."""
    limit = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONCURRENCY)) as http:

        async def one(token: str) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            async with limit:
                for path, params in (
                    ("/api/v1/conferences", {"per_page": PER_PAGE}),
                    ("/api/v1/appointment_groups", {"scope": "reservable", "per_page": PER_PAGE}),
                ):
                    answer = await http.get(url + path, params=params, headers=headers)
                    if answer.status_code != 200:
                        raise CheckFailed(f"HTTP floor: {path} answered {answer.status_code}")

        cpu = time.process_time()
        await asyncio.gather(*(one(t) for t in tokens))
        return time.process_time() - cpu


def check(stats: dict[str, Any], requests: list[int], label: str) -> None:
    if set(stats["by_status"]) != {"200"}:
        raise CheckFailed(f"{label}: the simulator answered {stats['by_status']}")
    # calbridge counts a request it retried after the connection dropped (a kept-alive
    # connection the server closed as it was reused) that the simulator never served; it can
    # never have been served more than calbridge sent.
    if not stats["total"] <= sum(requests) <= stats["total"] * 1.01:
        raise CheckFailed(
            f"{label}: the simulator served {stats['total']} requests, calbridge counted"
            f" {sum(requests)}"
        )


def check_feeds(feeds: ServedFeeds, expected: list[int]) -> None:
    """Every user's feed holds the events the simulator holds for that user."""
    for n, want in enumerate(expected):
        feed = feeds.get(f"u{n}")
        got = -1 if feed is None else feed.body.count(b"BEGIN:VEVENT")
        if got != want:
            raise CheckFailed(f"feed u{n} holds {got} events; the simulator holds {want}")


def bench_settings(url: str, users: int, tmp: str) -> Settings:
    """The benchmark's config: one account and one feed of conferences and reservations per
    user, each account's token in ``BENCH_TOKEN_<n>``, state in SQLite under ``tmp``."""
    return settings_from(
        {
            "state": {"url": f"sqlite:///{Path(tmp) / 'state.sqlite3'}"},
            "accounts": [
                {"id": f"u{n}", "canvas_url": url, "token_env": f"BENCH_TOKEN_{n}"}
                for n in range(users)
            ],
            "feeds": [
                {"id": f"u{n}", "account": f"u{n}", "include": ["conferences", "reservations"]}
                for n in range(users)
            ],
        }
    )


def run(users: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, SimProcess(users, GROUPS, CONFERENCES) as sim:
        for n, token in enumerate(sim.tokens):
            os.environ[f"BENCH_TOKEN_{n}"] = token
        settings = bench_settings(sim.url, users, tmp)
        state = open_state(settings.state.url or "")
        writes = {"n": 0}

        def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
                writes["n"] += 1

        event.listen(state.engine, "before_cursor_execute", count)
        feeds = ServedFeeds()
        syncer = Syncer(settings, state, feeds)

        async def both() -> tuple[list[int], list[int], float, float, float, int, float, float]:
            sim_stats(sim.url, reset=True)
            cpu, wall, sim0 = time.process_time(), time.perf_counter(), sim_cpu(sim.proc.pid)
            first = await cycle(syncer)
            cpu1, wall1 = time.process_time() - cpu, time.perf_counter() - wall
            sim1 = sim_cpu(sim.proc.pid) - sim0
            print(  # a long run shows its first cycle before the rest
                f"  first cycle of {users} users: {wall1:.1f} s wall, {cpu1:.1f} s CPU, simulator"
                f" {sim1:.1f} s CPU, peak RSS so far"
                f" {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB",
                file=sys.stderr,
                flush=True,
            )
            check(sim_stats(sim.url, reset=True), first, "first cycle")
            writes["n"] = 0
            profile = cProfile.Profile(time.process_time) if PROFILE else None
            cpu, wall, sim0 = time.process_time(), time.perf_counter(), sim_cpu(sim.proc.pid)
            if profile is not None:
                profile.enable()
            second = await cycle(syncer)
            statuses = getattr(syncer, "statuses", None)  # absent before the batched writes
            if statuses is not None:
                await statuses.flush()  # the poll times still waiting count in this cycle
            cpu2, wall2 = time.process_time() - cpu, time.perf_counter() - wall
            if profile is not None:
                profile.disable()
                profile.dump_stats(PROFILE)
            print(
                f"  unchanged cycle of {users} users: {wall2:.1f} s wall, {cpu2:.1f} s CPU,"
                f" simulator {sim_cpu(sim.proc.pid) - sim0:.1f} s CPU, peak RSS so far"
                f" {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB",
                file=sys.stderr,
                flush=True,
            )
            check(sim_stats(sim.url, reset=True), second, "second cycle")
            floor = await http_floor(sim.url, sim.tokens)
            check(sim_stats(sim.url, reset=True), [2] * len(sim.tokens), "HTTP floor")
            close = getattr(syncer, "aclose", None)  # absent before the shared pool
            if close is not None:
                await close()
            return first, second, wall1, cpu1, cpu2, writes["n"], floor, sim1

        first, second, wall, cpu1, cpu2, second_writes, floor, sim1 = asyncio.run(both())
        check_feeds(feeds, sim.expected)
        state.close()
    return {
        "wall": wall,
        "cpu": cpu1,
        "sim_cpu": sim1,
        "req1": sum(first) / users,
        "req2": sum(second) / users,
        "cpu_ms_unchanged": cpu2 * 1000 / users,
        "writes2": second_writes,
        "floor_ms": floor * 1000 / users,
        "events": sum(sim.expected) / users,
    }


def main() -> int:
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000]
    print(
        f"per user: {GROUPS} appointment groups, {CONFERENCES} conferences; a feed of conferences"
        f" and reservations; Canvas simulator in another process; {os.cpu_count()} CPUs"
    )
    print(
        f"minimum requests per user: {minimum(True)} in a process's first cycle (with"
        f" users/self), {minimum(False)} after"
    )
    print(
        f"{'users':>6} {'wall s':>7} {'cpu s':>6} {'sim cpu s':>9} {'peak RSS MB':>11} {'req/user 1st':>12}"
        f" {'÷min':>5} {'req/user 2nd':>12} {'÷min':>5} {'cpu ms/unchanged user':>21}"
        f" {'(bare HTTP)':>11} {'db writes 2nd':>13}"
    )
    for users in sizes:
        try:
            r = run(users)
        except CheckFailed as exc:
            print(f"{users:>6} CHECK FAILED: {exc}")
            return 1
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{users:>6} {r['wall']:>7.1f} {r['cpu']:>6.1f} {r['sim_cpu']:>9.1f} {rss:>11.0f} {r['req1']:>12.2f}"
            f" {r['req1'] / minimum(True):>5.2f} {r['req2']:>12.2f}"
            f" {r['req2'] / minimum(False):>5.2f} {r['cpu_ms_unchanged']:>21.1f}"
            f" {r['floor_ms']:>11.1f} {r['writes2']:>13}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
