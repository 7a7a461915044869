"""The read path of an OAuth-connected account: Bearer auth that keeps its access token alive.

An ``httpx.Auth`` for :class:`~bridge.canvas.client.CanvasClient`, so the client, its retries
and its error mapping stay exactly as they are for personal access tokens. The rules
(canvas-oauth.md):

* refresh shortly before expiry (``leeway``), so a poll does not start on a dying token;
* a 401 **with** ``WWW-Authenticate`` means the token expired or was deleted: refresh once and
  send the read again; a write is not resent (the write-back journal decides about writes),
  but the token is still renewed for the next request;
* a 401 **without** it is a permission problem (e.g. a scope the key was not granted):
  passed through untouched, refreshing would not help;
* one refresh at a time: after a refresh Canvas stops accepting the previous access token at
  once, so concurrent requests that failed with the old token retry with the new one instead
  of refreshing again (which would kill the token the first refresh just got);
* a dead refresh token (:class:`~bridge.errors.ReconnectNeeded`) is remembered: every later
  request fails at once without asking Canvas again, so nothing retries in a loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from datetime import UTC, datetime, timedelta

import httpx

from bridge.errors import ReconnectNeeded
from bridge.model.tokens import TokenSet

log = logging.getLogger("bridge.canvas.oauth")

SAFE_METHODS = {"GET", "HEAD"}


class RefreshingAuth(httpx.Auth):
    """Bearer auth over one person's :class:`TokenSet`, refreshed through ``refresh`` (usually
    :meth:`~bridge.canvas.oauth.CanvasOAuth.refresh`). ``on_refresh`` learns every new set, to
    store it; ``tokens`` is always the current one."""

    def __init__(
        self,
        tokens: TokenSet,
        refresh: Callable[[TokenSet], Awaitable[TokenSet]],
        *,
        leeway: timedelta,
        on_refresh: Callable[[TokenSet], Awaitable[None]] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.tokens = tokens
        self._refresh = refresh
        self._on_refresh = on_refresh
        self._leeway = leeway
        self._now = now
        self._lock = asyncio.Lock()
        self._dead: ReconnectNeeded | None = None
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"RefreshingAuth(user={self.tokens.user_id})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("RefreshingAuth works with httpx.AsyncClient only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        used = await self._current()
        request.headers["Authorization"] = f"Bearer {used.access_token}"
        response = yield request
        if response.status_code != 401 or "www-authenticate" not in response.headers:
            return
        fresh = await self._renew(used)
        if request.method.upper() not in SAFE_METHODS:
            return
        log.info("Canvas refused an expired access token; retrying %s once", request.url.path)
        request.headers["Authorization"] = f"Bearer {fresh.access_token}"
        yield request

    async def _current(self) -> TokenSet:
        """The token to send: refreshed first when it expires within the leeway."""
        if self._dead is not None:
            raise self._dead
        if self.tokens.expires_within(self._leeway, self._now()):
            return await self._renew(self.tokens)
        return self.tokens

    async def _renew(self, used: TokenSet) -> TokenSet:
        """Refresh unless someone already replaced ``used`` while we waited."""
        async with self._lock:
            if self._dead is not None:
                raise self._dead
            if self.tokens.access_token != used.access_token:
                return self.tokens
            try:
                fresh = await self._refresh(self.tokens)
            except ReconnectNeeded as exc:
                self._dead = exc
                raise
            self.tokens = fresh
            self.refreshes += 1
            if self._on_refresh is not None:
                await self._on_refresh(fresh)
            return fresh
