"""Plain-token Canvas GETs over aiohttp: the same request for about a third of the CPU.

An unchanged poll is two GETs, and once calbridge skips the rest of an unchanged account
(:mod:`bridge.daemon.skip`) those GETs are most of its cost: httpx spent ~1.4 ms of CPU per
GET here, aiohttp ~0.55 ms (``bench/http_clients.py``: same requests, same answers checked).
So a GET sent with a personal access token goes through :class:`FastGets`; writes, OAuth-signed
requests (``httpx.Auth``) and origins reached through a proxy keep httpx.

What the httpx path guarantees, kept here (the caller, :class:`~bridge.canvas.transport.Transport`,
adds retries, throttling, the size limit and the request deadline on top of both):
* one session per Canvas origin, shared by every account on it, its TLS context built once,
  a bounded connector, the token in each request's own ``Authorization`` header;
* no cookie jar (a cookie set for one account never rides along with another's request);
* redirects never followed (the token never goes to another origin);
* the same per-read timeout; errors as httpx's: a refused or timed-out connection is a
  ``ConnectError``/``ConnectTimeout`` (never sent: safe to retry), a connection lost after
  sending a ``ReadError``, a read timeout a ``ReadTimeout``.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from urllib.request import getproxies, proxy_bypass

import aiohttp
import httpx
from yarl import URL


@dataclass(frozen=True)
class Answer:
    """A GET's status and headers (the body is read by the caller, chunk by chunk)."""

    status: int
    headers: list[tuple[str, str]]
    content_length: int | None


def proxied(base_url: str) -> bool:
    """Whether the environment sends requests for ``base_url`` through a proxy (as httpx
    would: ``HTTP(S)_PROXY``/``ALL_PROXY`` unless ``NO_PROXY`` names the host)."""
    proxies = getproxies()
    parts = URL(base_url)
    if not (proxies.get(parts.scheme or "") or proxies.get("all")):
        return False
    return not proxy_bypass(parts.host or "")


class FastGets:
    """One aiohttp session for one Canvas origin, made in the running event loop."""

    def __init__(self, *, max_connections: int, timeout: float, tls: ssl.SSLContext | None) -> None:
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=timeout, sock_read=timeout
        )
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, ssl=self._tls if self._tls is not None else False
            )
            session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=self._timeout,
                trust_env=False,  # proxied origins never come here (see proxied)
                auto_decompress=True,  # bodies decoded (the size limit counts decoded bytes)
            )
            self._session, self._loop = session, loop
        return session

    @asynccontextmanager
    async def get(
        self, url: str, params: Sequence[tuple[str, Any]] | None, headers: dict[str, str]
    ) -> AsyncIterator[tuple[Answer, AsyncIterator[bytes]]]:
        """GET ``url`` (``params``: pairs added to its query), without following redirects;
        yields the answer and its (decoded) body's chunks."""
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        session = self._current()
        try:
            async with session.get(URL(url), headers=headers, allow_redirects=False) as answer:
                found = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.raw_headers]
                yield (
                    Answer(answer.status, found, answer.content_length),
                    answer.content.iter_chunked(1 << 16),
                )
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc)) from exc
        except aiohttp.ServerTimeoutError as exc:
            raise httpx.ReadTimeout(str(exc)) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        except (aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError) as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._loop is asyncio.get_running_loop():
            await session.close()


def enabled() -> bool:
    """``CALBRIDGE_HTTPX_ONLY=1`` sends every Canvas request through httpx (a way back)."""
    return os.environ.get("CALBRIDGE_HTTPX_ONLY", "") not in ("1", "true", "yes")


def own_fast_gets(base_url: str, timeout: float, max_connections: int) -> FastGets | None:
    """A session for one standalone client (``calbridge canvas …``, tests); None when GETs
    must keep httpx (a proxy, or ``CALBRIDGE_HTTPX_ONLY``)."""
    if not enabled() or proxied(base_url):
        return None
    tls = httpx.create_ssl_context() if base_url.startswith("https:") else None
    return FastGets(max_connections=max_connections, timeout=timeout, tls=tls)
