"""One HTTP client per Canvas origin, shared by every account on it.

Building an ``httpx.AsyncClient`` costs a TLS context (loading the CA bundle: ~0.1 s of CPU)
and a fresh connection pool; doing that per account per cycle was most of a cycle's cost.
The pool keeps one client per origin (scheme, host, port) with the TLS context built once,
connections kept alive across accounts and a bound on how many are open at once.

What keeps accounts apart on a shared client:
* no credentials on the client: each request carries its own account's ``Authorization``
  header (see :class:`~bridge.canvas.transport.Transport`), and a client only ever talks to
  its own origin (the Canvas client refuses links to any other);
* no cookie jar: a cookie Canvas sets for one account's session is never stored, so it
  cannot ride along with another account's request;
* redirects are never followed (a token must not follow a redirect to another host).

The daemon creates one pool and closes it when it stops. A client is bound to the event loop
it was made in; used from another loop (``asyncio.run`` twice) a new one is made.

Before each request httpcore asks every kept-alive connection whether the server closed it
("is the socket readable?"), and its anyio streams answer by building a dict of every socket
attribute (``getpeername``, ``getsockname``, address parsing) to read one of them: with 16
connections that was about a third of the CPU of a bare GET. :class:`QuickReadable` answers
from the socket, found once per connection.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import typing
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpcore
import httpx

from bridge.canvas import fast_get
from bridge.canvas.client import origin
from bridge.canvas.fast_get import FastGets, proxied


@dataclass(frozen=True)
class PoolOptions:
    """Connections per Canvas origin and the per-read timeout of the shared clients."""

    max_connections: int
    timeout: float


def _no_cookies() -> CookieJar:
    """A jar that accepts no cookie (an empty allow-list of domains)."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def _readable(sock: socket.socket | None) -> bool:
    """Whether a read would not block (data, or the server's close): httpcore's test of a
    kept-alive connection, as ``httpcore._utils.is_socket_readable`` does it."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:  # closed: as if the next read returned the end
        return True
    if not hasattr(select, "poll"):  # pragma: no cover - not Linux
        return bool(select.select([fd], [], [], 0)[0])
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


class _QuickStream(httpcore.AsyncNetworkStream):
    """A network stream that answers ``is_readable`` from its socket, looked up once.
    (The ``timeout`` parameters are httpcore's interface, passed on as they come.)"""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        return _QuickStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":
            if self._socket is None:
                self._socket = self._inner.get_extra_info("socket")
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


class QuickReadable(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with :class:`_QuickStream` streams."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self.inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _QuickStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - Canvas is reached over TCP
        return _QuickStream(await self.inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def http_transport(verify: ssl.SSLContext | bool, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport with :class:`QuickReadable` under its connection pool. httpx takes no
    network backend, so it is set on the pool httpx made (``_network_backend``, httpcore 1.x);
    if a later httpcore names it otherwise, the transport is left as httpx made it."""
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.AsyncNetworkBackend):
        pool._network_backend = QuickReadable(backend)  # type: ignore[union-attr]
    return transport


class CanvasPool:
    """Shared HTTP clients by Canvas origin. Use :meth:`http_for`; :meth:`aclose` at the end."""

    def __init__(
        self, options: PoolOptions, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.options = options
        self._transport = transport
        self._tls: ssl.SSLContext | None = None
        self._clients: dict[tuple[str, str, int | None], httpx.AsyncClient] = {}
        self._fast: dict[tuple[str, str, int | None], FastGets | None] = {}
        self._loops: dict[tuple[str, str, int | None], asyncio.AbstractEventLoop] = {}
        self.created = 0  # clients made so far (tests check that accounts share them)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = httpx.create_ssl_context()
        return self._tls

    def http_for(self, base_url: str) -> httpx.AsyncClient:
        """The shared client for ``base_url``'s origin, made on first use in this event loop."""
        key = origin(base_url)
        loop = asyncio.get_running_loop()
        client = self._clients.get(key)
        if client is not None and self._loops.get(key) is loop and not client.is_closed:
            return client
        limits = httpx.Limits(
            max_connections=self.options.max_connections,
            max_keepalive_connections=self.options.max_connections,
        )
        # Plain-http origins (loopback tests, the simulator) need no TLS context at all.
        verify = self._tls_context() if key[0] == "https" else False
        client = httpx.AsyncClient(
            verify=verify,
            timeout=self.options.timeout,
            limits=limits,
            transport=self._transport or http_transport(verify, limits),
            follow_redirects=False,
            cookies=_no_cookies(),
        )
        self._clients[key], self._loops[key] = client, loop
        self.created += 1
        return client

    def fast_for(self, base_url: str) -> FastGets | None:
        """The aiohttp session (see fast_get.py) for plain-token GETs to ``base_url``'s origin;
        None when they must keep httpx: a test's transport, a proxy, ``CALBRIDGE_HTTPX_ONLY``."""
        key = origin(base_url)
        if key not in self._fast:
            usable = self._transport is None and fast_get.enabled() and not proxied(base_url)
            tls = self._tls_context() if key[0] == "https" else None
            self._fast[key] = (
                FastGets(
                    max_connections=self.options.max_connections,
                    timeout=self.options.timeout,
                    tls=tls,
                )
                if usable
                else None
            )
        return self._fast[key]

    async def aclose(self) -> None:
        """Close the clients made in the running loop; forget those of loops now gone."""
        fast, self._fast = self._fast, {}
        for gets in fast.values():
            if gets is not None:
                await gets.aclose()
        loop = asyncio.get_running_loop()
        clients, self._clients, loops, self._loops = self._clients, {}, self._loops, {}
        for key, client in clients.items():
            if loops.get(key) is loop:
                await client.aclose()
