"""How many Canvas requests one poll makes, beside the minimum the API allows.

A simulated student with 250 appointment groups and 35 conferences, polled over real HTTP
against the simulator on loopback. Prints requests made, the minimum (``per_page=100``:
users/self + pages of conferences + pages of reservable groups + one manageable page), their
ratio and the median wall time of a few polls. Exits 1 if a poll makes more requests than the
minimum.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from bridge.canvas.client import CanvasClient
from bridge.canvas.poller import minimum_requests, poll_account
from bridge.config import AccountConfig
from bridge.simulator.app import create_app
from bridge.simulator.sample import bulk_world
from bridge.simulator.server import serve_in_thread

GROUPS, CONFERENCES, RUNS = 250, 35, 5


async def one_poll(url: str, token: str) -> tuple[int, float, int, int]:
    started = time.perf_counter()
    account = AccountConfig(id="bench", canvas_url=url, token_env="UNUSED")
    async with CanvasClient(url, token, limits=account.canvas_limits()) as client:
        snapshot = await poll_account(client, "canvas.sim", account.poll_options())
    return (
        client.requests_made,
        time.perf_counter() - started,
        len(snapshot.reservable),
        len(snapshot.conferences),
    )


def main() -> int:
    world, tokens = bulk_world(users=1, groups_per_user=GROUPS, conferences_per_user=CONFERENCES)
    with serve_in_thread(create_app(world)) as server:
        results = [asyncio.run(one_poll(server.url, tokens[0])) for _ in range(RUNS)]
    made, _, groups, conferences = results[0]
    if (groups, conferences) != (GROUPS, CONFERENCES):  # a failed poll is no measurement
        print(
            f"the poll found {groups} groups and {conferences} conferences, not {GROUPS}/{CONFERENCES}"
        )
        return 1
    minimum = minimum_requests(conferences, groups, 0)
    wall = statistics.median(r[1] for r in results)
    print(f"user with {groups} appointment groups and {conferences} conferences")
    print(
        f"requests per poll: {made}   minimum the API allows: {minimum}   ratio: {made / minimum:.2f}"
    )
    print(
        f"wall time per poll (median of {RUNS}): {wall * 1000:.0f} ms   ({wall * 1000 / made:.0f} ms per request)"
    )
    return 0 if all(r[0] <= minimum for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
