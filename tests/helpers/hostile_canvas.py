"""A hostile Canvas: the simulator behind a loopback proxy that misbehaves on demand.

Every request goes to the real simulator app (so an honest answer is a real Canvas answer);
``mode`` then decides what the proxy does with it:

* ``honest``        — pass the answer through;
* ``foreign_link``  — list answers get ``Link: <foreign>; rel="next"`` (another origin);
* ``huge``          — ``/api/v1/conferences`` answers a body of ``huge_bytes`` (never all read);
* ``trickle``       — ``/api/v1/conferences`` answers one byte every ``trickle_every`` seconds;
* ``surrogates``    — every title, description and comment gets a lone surrogate (``\\ud83d``);
* ``crlf``          — ``join_url``, ``url`` and ``html_url`` carry CRLF + ``END:VEVENT`` …;
* ``retry_date``    — the first answer is 429 with ``Retry-After`` as an HTTP date.

A second tiny server, :class:`Collector`, records every request it gets: the place a foreign
``Link`` points at, to prove the token never reaches it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bridge.simulator.app import create_app
from bridge.simulator.world import World

INJECTION = (
    "https://evil.example/join\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:injected@evil\r\n"
    "DTSTAMP:20260101T000000Z\r\nDTSTART:20260301T100000Z\r\nSUMMARY:Injected"
)
SURROGATE = "\ud83d"
_LISTS = ("/api/v1/conferences", "/api/v1/appointment_groups")


@dataclass
class HostileCanvas:
    world: World
    mode: str = "honest"
    foreign: str = "http://127.0.0.1:9"
    huge_bytes: int = 400 * 1024 * 1024
    trickle_every: float = 1.0
    sent_bytes: int = 0  # body bytes the huge/trickle generators handed to the server
    retry_after_seconds: float = 2.0
    _throttled: bool = False
    paths: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        sim = create_app(self.world)

        async def proxy(request: Request) -> Response:
            self.paths.append(request.url.path)
            path = request.url.path
            if self.mode == "huge" and path == "/api/v1/conferences":
                return StreamingResponse(self._huge(), media_type="application/json")
            if self.mode == "trickle" and path == "/api/v1/conferences":
                return StreamingResponse(self._trickle(), media_type="application/json")
            if self.mode == "retry_date" and not self._throttled:
                self._throttled = True
                when = datetime.now(UTC) + timedelta(seconds=self.retry_after_seconds + 1)
                return Response(
                    '{"errors": [{"message": "Rate Limit Exceeded"}]}',
                    429,
                    headers={"Retry-After": format_datetime(when, usegmt=True)},
                )
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=sim), base_url=f"http://{request.url.netloc}"
            ) as inner:
                answer = await inner.request(
                    request.method,
                    request.url.path,
                    params=list(request.query_params.multi_items()),
                    content=await request.body(),
                    headers={k: v for k, v in request.headers.items() if k != "host"},
                )
            headers = {k: v for k, v in answer.headers.items() if k in ("link", "content-type")}
            body = answer.content
            if self.mode == "foreign_link" and path in _LISTS:
                query = "page=2&per_page=100"
                headers["link"] = f'<{self.foreign}{path}?{query}>; rel="next"'
            if self.mode in ("surrogates", "crlf") and answer.status_code == 200:
                data = json.loads(body)
                _poison(data, self.mode)
                body = json.dumps(data).encode()  # ensure_ascii: "\ud83d" as Canvas sends it
            return Response(body, answer.status_code, headers=headers)

        methods = ["GET", "POST", "PUT", "DELETE"]
        return Starlette(routes=[Route("/{path:path}", proxy, methods=methods)])

    async def _huge(self) -> AsyncIterator[bytes]:
        chunk = b" " * (1024 * 1024)
        yield b'{"conferences": ['
        while self.sent_bytes < self.huge_bytes:
            self.sent_bytes += len(chunk)
            yield chunk
            await asyncio.sleep(0)  # let the server notice the client hanging up
        yield b"]}"

    async def _trickle(self) -> AsyncIterator[bytes]:
        for byte in b'{"conferences": []}' + b" " * 1000:
            self.sent_bytes += 1
            yield bytes([byte])
            await asyncio.sleep(self.trickle_every)


def _poison(data: Any, mode: str) -> None:
    """Turn Canvas JSON hostile in place."""
    if isinstance(data, list):
        for item in data:
            _poison(item, mode)
        return
    if not isinstance(data, dict):
        return
    for key, value in list(data.items()):
        if isinstance(value, dict | list):
            _poison(value, mode)
        elif mode == "surrogates" and key in ("title", "description", "comments", "name"):
            data[key] = f"{value or ''} {SURROGATE}"
        elif mode == "crlf" and key in ("join_url", "url", "html_url"):
            data[key] = INJECTION
    if mode == "crlf" and "conference_type" in data:
        data["join_url"] = INJECTION


@dataclass
class Collector:
    """Records every request: method, path and whether an Authorization header came along."""

    seen: list[tuple[str, str, bool]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def record(request: Request) -> Response:
            auth = "authorization" in request.headers
            self.seen.append((request.method, request.url.path, auth))
            return Response("[]", 200, media_type="application/json")

        return Starlette(routes=[Route("/{path:path}", record, methods=["GET", "POST"])])
