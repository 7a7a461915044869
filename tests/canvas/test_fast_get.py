"""Plain-token GETs over aiohttp (fast_get.py) keep what the httpx path guarantees: no
redirect followed (the token stays on its origin), one session per origin shared by the
accounts with each request's own token and no cookie, httpx where a proxy is configured, and
the same errors. Each behaviour is checked on both paths: the answer must not depend on it."""

from __future__ import annotations

import socket

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from bridge import errors
from bridge.canvas.client import CanvasClient
from bridge.canvas.pool import CanvasPool, PoolOptions
from bridge.simulator.server import serve_in_thread
from tests.helpers.options import canvas_limits


class Recorder:
    """A Canvas stand-in: ``/users/self`` sets a cookie, ``/away`` redirects to ``target``."""

    def __init__(self, target: str = "") -> None:
        self.seen: list[tuple[str, str | None, str | None]] = []  # path, authorization, cookie
        self.target = target
        self.agents: list[str | None] = []

    def app(self) -> Starlette:
        def note(request: Request) -> None:
            self.agents.append(request.headers.get("user-agent"))
            self.seen.append(
                (
                    request.url.path,
                    request.headers.get("authorization"),
                    request.headers.get("cookie"),
                )
            )

        async def me(request: Request) -> JSONResponse:
            note(request)
            response = JSONResponse({"id": len(self.seen), "name": "someone"})
            response.set_cookie("_normandy_session", f"session-{len(self.seen)}")
            return response

        async def away(request: Request) -> RedirectResponse:
            note(request)
            return RedirectResponse(self.target + "/api/v1/users/self", status_code=302)

        return Starlette(routes=[Route("/api/v1/users/self", me), Route("/away", away)])


def _client(pool: CanvasPool, url: str, token: str, fast: bool) -> CanvasClient:
    return CanvasClient(
        url,
        token,
        limits=canvas_limits(),
        max_retries=1,
        backoff_base=0.01,
        http=pool.http_for(url),
        fast=pool.fast_for(url) if fast else None,
    )


@pytest.mark.parametrize("fast", [True, False], ids=["aiohttp", "httpx"])
async def test_shared_per_origin_each_request_its_token_no_cookie(fast: bool) -> None:
    one, two = Recorder(), Recorder()
    pool = CanvasPool(PoolOptions(max_connections=4, timeout=10))
    with serve_in_thread(one.app()) as a, serve_in_thread(two.app()) as b:
        assert (pool.fast_for(a.url) is not None) is True
        assert pool.fast_for(a.url) is pool.fast_for(a.url + "/")  # one per origin
        clients = [
            _client(pool, url, token, fast)
            for url, token in ((a.url, "token-alice"), (a.url, "token-bob"), (b.url, "token-carol"))
        ]
        for _ in range(2):
            for client in clients:
                await client.me()
        for client in clients:
            await client.aclose()  # leaves the shared session open
        await clients[0].me()
        await pool.aclose()
    assert [auth for _, auth, _ in one.seen] == ["Bearer token-alice", "Bearer token-bob"] * 2 + [
        "Bearer token-alice"
    ]
    assert [auth for _, auth, _ in two.seen] == ["Bearer token-carol"] * 2
    assert all(cookie is None for _, _, cookie in one.seen + two.seen)
    assert all(one.agents + two.agents)  # a User-Agent, as httpx sends (some proxies want one)
    assert pool.created == 2  # one httpx client per origin, shared by its accounts


@pytest.mark.parametrize("fast", [True, False], ids=["aiohttp", "httpx"])
async def test_a_redirect_to_another_origin_is_not_followed(fast: bool) -> None:
    elsewhere = Recorder()
    pool = CanvasPool(PoolOptions(max_connections=4, timeout=10))
    with serve_in_thread(elsewhere.app()) as other:
        canvas = Recorder(target=other.url)
        with serve_in_thread(canvas.app()) as server:
            client = _client(pool, server.url, "token-alice", fast)
            with pytest.raises(errors.CanvasError) as raised:
                await client._json("GET", "/away")
            await pool.aclose()
    assert raised.value.status == 302
    assert [path for path, _, _ in canvas.seen] == ["/away"]
    assert elsewhere.seen == []  # the token never left its origin


@pytest.mark.parametrize("fast", [True, False], ids=["aiohttp", "httpx"])
async def test_a_refused_connection_is_canvas_unavailable(fast: bool) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    pool = CanvasPool(PoolOptions(max_connections=4, timeout=5))
    client = _client(pool, url, "token-alice", fast)
    with pytest.raises(errors.CanvasUnavailable, match="ConnectError"):
        await client.me()
    assert client.requests_made == 2  # never sent: retried (max_retries=1)
    await pool.aclose()


def test_a_proxy_or_the_switch_keeps_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert CanvasPool(PoolOptions(4, 5)).fast_for("https://canvas.example.edu") is not None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.edu:3128")
    assert CanvasPool(PoolOptions(4, 5)).fast_for("https://canvas.example.edu") is None
    monkeypatch.setenv("NO_PROXY", "canvas.example.edu")
    assert CanvasPool(PoolOptions(4, 5)).fast_for("https://canvas.example.edu") is not None
    monkeypatch.setenv("CALBRIDGE_HTTPX_ONLY", "1")
    assert CanvasPool(PoolOptions(4, 5)).fast_for("https://canvas.example.edu") is None
