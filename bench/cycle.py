"""One full sync cycle for many simulated users: wall time, Canvas requests per user beside the
minimum the API allows, and peak RSS.

Each user is an account with a feed (conferences, reservations, open slots); state in a temp
SQLite; the simulator served over HTTP on loopback. Users share courses of 20, each course
carrying GROUPS appointment groups and CONFERENCES conferences.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from bridge.canvas.poller import minimum_requests
from bridge.config import settings_from
from bridge.daemon.cycle import Syncer
from bridge.simulator.app import create_app
from bridge.simulator.sample import bulk_world
from bridge.simulator.server import serve_in_thread
from bridge.state import open_state
from bridge.web.served import ServedFeeds

GROUPS, CONFERENCES = 10, 5


async def cycle(syncer: Syncer, concurrency: int) -> list[int]:
    limit = asyncio.Semaphore(concurrency)

    async def one(account: object) -> int:
        async with limit:
            result = await syncer.sync_account(account)  # type: ignore[arg-type]
            assert result.ok, result.error
            return result.requests

    return await asyncio.gather(*(one(a) for a in syncer.settings.accounts))


def run(users: int) -> tuple[float, float, int]:
    world, tokens = bulk_world(
        users=users, groups_per_user=GROUPS, conferences_per_user=CONFERENCES
    )
    world.throttle.hwm = 1e9  # measure calbridge, not the simulated throttle
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(create_app(world)) as server:
        for n, token in enumerate(tokens):
            os.environ[f"BENCH_TOKEN_{n}"] = token
        settings = settings_from(
            {
                "state": {"url": f"sqlite:///{Path(tmp) / 'state.sqlite3'}"},
                "accounts": [
                    {
                        "id": f"u{n}",
                        "canvas_url": server.url,
                        "token_env": f"BENCH_TOKEN_{n}",
                        "include_managed": False,
                    }
                    for n in range(users)
                ],
                "feeds": [
                    {
                        "id": f"u{n}",
                        "account": f"u{n}",
                        "include": ["conferences", "reservations", "open_slots"],
                    }
                    for n in range(users)
                ],
            }
        )
        state = open_state(settings.state.url or "")
        syncer = Syncer(settings, state, ServedFeeds())
        started = time.perf_counter()
        requests = asyncio.run(cycle(syncer, concurrency=8))
        elapsed = time.perf_counter() - started
        state.close()
    return elapsed, sum(requests) / users, max(requests)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000]
    minimum = minimum_requests(CONFERENCES, GROUPS, include_managed=False)
    print(
        f"per user: {GROUPS} appointment groups, {CONFERENCES} conferences; minimum requests per user: {minimum}"
    )
    print(
        f"{'users':>6} {'wall s':>8} {'s/user':>8} {'req/user':>9} {'vs min':>7} {'peak RSS MB':>12}"
    )
    for users in sizes:
        elapsed, per_user, _ = run(users)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{users:>6} {elapsed:>8.1f} {elapsed / users:>8.3f} {per_user:>9.2f} {per_user / minimum:>7.2f} {rss:>12.0f}"
        )


if __name__ == "__main__":
    main()
