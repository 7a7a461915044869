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
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from bridge.canvas.client import origin


@dataclass(frozen=True)
class PoolOptions:
    """Connections per Canvas origin and the per-read timeout of the shared clients."""

    max_connections: int
    timeout: float


def _no_cookies() -> CookieJar:
    """A jar that accepts no cookie (an empty allow-list of domains)."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


class CanvasPool:
    """Shared HTTP clients by Canvas origin. Use :meth:`http_for`; :meth:`aclose` at the end."""

    def __init__(
        self, options: PoolOptions, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.options = options
        self._transport = transport
        self._tls: ssl.SSLContext | None = None
        self._clients: dict[tuple[str, str, int | None], httpx.AsyncClient] = {}
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
        client = httpx.AsyncClient(
            # Plain-http origins (loopback tests, the simulator) need no TLS context at all.
            verify=self._tls_context() if key[0] == "https" else False,
            timeout=self.options.timeout,
            limits=limits,
            transport=self._transport,
            follow_redirects=False,
            cookies=_no_cookies(),
        )
        self._clients[key], self._loops[key] = client, loop
        self.created += 1
        return client

    async def aclose(self) -> None:
        """Close the clients made in the running loop; forget those of loops now gone."""
        loop = asyncio.get_running_loop()
        clients, self._clients, loops, self._loops = self._clients, {}, self._loops, {}
        for key, client in clients.items():
            if loops.get(key) is loop:
                await client.aclose()
