"""CPU per Canvas GET: httpx against aiohttp, the same requests to the same simulator.

``python bench/http_clients.py [USERS]`` (default 300) starts the Canvas simulator in a process
of its own, then sends each user's two GETs of an unchanged poll (conferences, reservable
appointment groups; ``per_page=100``, the user's token in ``Authorization``) through one shared
``httpx.AsyncClient`` and through one shared ``aiohttp.ClientSession``, 8 at a time, 16
connections each, alternating the two three times. Before timing it checks that both got the
same status (200) and byte for byte the same body for every request; it prints the CPU of
this process per GET for each and their ratio (best of the three rounds each), and exits 1 if
a check fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).parent))
from canvas_sim import SimProcess

CONCURRENCY, CONNECTIONS, ROUNDS = 8, 16, 3
PATHS = (
    ("/api/v1/conferences", [("per_page", "100")]),
    ("/api/v1/appointment_groups", [("scope", "reservable"), ("per_page", "100")]),
)

Get = Callable[[str, list[tuple[str, str]], str], Awaitable[tuple[int, bytes]]]


async def run_all(url: str, tokens: list[str], get: Get) -> list[tuple[int, str]]:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(token: str) -> list[tuple[int, str]]:
        async with limit:
            out = []
            for path, params in PATHS:
                status, body = await get(url + path, params, token)
                out.append((status, hashlib.sha256(body).hexdigest()))
            return out

    results = await asyncio.gather(*(one(t) for t in tokens))
    return [r for pair in results for r in pair]


async def measure(url: str, tokens: list[str]) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with (
        httpx.AsyncClient(limits=limits) as hx,
        aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as ai,
    ):

        async def via_httpx(
            target: str, params: list[tuple[str, str]], token: str
        ) -> tuple[int, bytes]:
            answer = await hx.get(
                target, params=params, headers={"Authorization": f"Bearer {token}"}
            )
            return answer.status_code, answer.content

        async def via_aiohttp(
            target: str, params: list[tuple[str, str]], token: str
        ) -> tuple[int, bytes]:
            headers = {"Authorization": f"Bearer {token}"}
            async with ai.get(
                target, params=params, headers=headers, allow_redirects=False
            ) as answer:
                return answer.status, await answer.read()

        reference = await run_all(url, tokens, via_httpx)  # also warms both pools
        other = await run_all(url, tokens, via_aiohttp)
        if any(status != 200 for status, _ in reference) or other != reference:
            raise SystemExit("CHECK FAILED: httpx and aiohttp did not get the same 200 answers")
        best = {"httpx": float("inf"), "aiohttp": float("inf")}
        for _ in range(ROUNDS):
            for name, get in (("httpx", via_httpx), ("aiohttp", via_aiohttp)):
                cpu = time.process_time()
                got = await run_all(url, tokens, get)
                spent = time.process_time() - cpu
                if got != reference:
                    raise SystemExit(f"CHECK FAILED: {name} answered differently in a round")
                best[name] = min(best[name], spent)
    gets = len(tokens) * len(PATHS)
    return best["httpx"] / gets, best["aiohttp"] / gets


def main() -> int:
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    with SimProcess(users, 10, 5) as sim:
        hx, ai = asyncio.run(measure(sim.url, sim.tokens))
    print(f"{users} users, {len(PATHS)} GETs each, same answers checked (status, sha256 of body)")
    print(f"httpx   {hx * 1e6:8.0f} µs CPU per GET")
    print(f"aiohttp {ai * 1e6:8.0f} µs CPU per GET  ({hx / ai:.2f}x less than httpx)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
