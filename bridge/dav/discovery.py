"""One CalDAV calendar calbridge writes into: settings, authentication, discovery.

Discovery (principal, calendar home, the calendar by display name) and creating the calendar
when it is missing use the ``caldav`` library — constructed directly, never through
``get_davclient``, which reads system-wide config files. The collection URL found is cached
by the caller, so discovery happens once, not every cycle.

Credentials go only where a server asked for them: the first request carries none, and the
answer's ``WWW-Authenticate`` challenge picks Digest (preferred) or Basic. A Digest-only
server therefore never sees the password in Basic form, and a server that asks for nothing
gets nothing. URLs in messages never carry userinfo (config refuses it anyway).
"""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from bridge.dav import boundary
from bridge.errors import CalDAVError, CalDAVUnavailable

# A PROPFIND Depth 0 answer is a few hundred bytes; more than this is not a CalDAV server.
PROBE_LIMIT = 1 << 20


@dataclass(frozen=True)
class TargetSettings:
    """One calendar's connection settings, built by ``CalDAVConfig.target_settings``."""

    id: str
    url: str
    username: str
    password: str = field(repr=False)
    calendar: str
    color: str | None
    timeout: float  # seconds per request
    max_parallel: int  # requests in flight at once
    delete_past: bool

    def __repr__(self) -> str:
        return f"TargetSettings(id={self.id!r}, url={self.url!r}, username={self.username!r}, calendar={self.calendar!r})"


def safe_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def challenge_schemes(response: httpx.Response) -> list[str]:
    """The auth schemes a 401 offers, lower-case, in the order the server gave them."""
    schemes = []
    for header in response.headers.get_list("www-authenticate"):
        for match in re.finditer(
            r"(?:^|,)\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)(?=\s+[^\s,=]|\s*(?:,|$))", header
        ):
            schemes.append(match.group(1).lower())
    return schemes


class ChallengeAuth(httpx.Auth):
    """Send credentials only in answer to a challenge: Digest if offered, else Basic.

    The scheme chosen is kept, so later requests authenticate at once (Digest reuses the
    server's nonce, as httpx's DigestAuth does).
    """

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password
        self.scheme: str | None = None
        self._inner: httpx.Auth | None = None

    def __repr__(self) -> str:
        return f"ChallengeAuth(username={self._username!r}, scheme={self.scheme!r})"

    def _choose(self, response: httpx.Response) -> httpx.Auth | None:
        offered = challenge_schemes(response)
        if "digest" in offered:
            self.scheme = "digest"
            return httpx.DigestAuth(self._username, self._password)
        if "basic" in offered:
            self.scheme = "basic"
            return httpx.BasicAuth(self._username, self._password)
        return None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._inner is not None:
            yield from self._inner.auth_flow(request)
            return
        response = yield request
        if response.status_code != boundary.UNAUTHORIZED:
            return
        inner = self._choose(response)
        if inner is None:
            return
        self._inner = inner
        flow = inner.auth_flow(request)
        retry = next(flow)
        if "authorization" not in retry.headers:  # Digest: answer the challenge we already have
            retry = flow.send(response)
        try:
            while True:
                response = yield retry
                retry = flow.send(response)
        except StopIteration:
            return


async def choose_auth(settings: TargetSettings) -> ChallengeAuth:
    """Probe the server (PROPFIND Depth 0) and return credentials that answer its challenge."""
    auth = ChallengeAuth(settings.username, settings.password)
    url = safe_url(settings.url)
    try:
        async with (
            httpx.AsyncClient(timeout=settings.timeout) as client,
            client.stream("PROPFIND", settings.url, headers={"Depth": "0"}, auth=auth) as response,
        ):
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > PROBE_LIMIT:
                    raise CalDAVError(
                        f"{url} answered more than {PROBE_LIMIT >> 20} MB to a PROPFIND of "
                        "one resource; is this a CalDAV server?",
                        target=settings.id,
                    )
    except httpx.TransportError as exc:
        raise CalDAVUnavailable(
            f"cannot reach {url}: {type(exc).__name__}", target=settings.id
        ) from None
    if response.status_code == boundary.UNAUTHORIZED:
        # no scheme chosen although the server offered some: none of them is one we speak
        offered = challenge_schemes(response) if auth.scheme is None else []
        raise boundary.auth_refused(settings.id, unsupported=offered)
    if response.status_code == 207:
        try:
            ET.fromstring(body)
        except ET.ParseError as exc:
            raise CalDAVError(
                f"{url} answered PROPFIND with malformed XML ({exc})", target=settings.id
            ) from None
    return auth


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "canvas"


def _discover_sync(settings: TargetSettings, create: bool) -> tuple[str, bool]:
    # Imported here, not with the module: the caldav library (with niquests, urllib3, trio,
    # rich and yaml) adds ~16 MB to the daemon's RSS, and only discovery uses it.
    from caldav.davclient import DAVClient
    from caldav.lib.error import AuthorizationError

    client = DAVClient(
        url=settings.url,
        username=settings.username,
        password=settings.password,
        timeout=int(settings.timeout),
    )
    try:
        principal = client.principal()
        for cal in principal.calendars():
            names = {str(cal.get_display_name() or ""), str(cal.url).rstrip("/").rsplit("/", 1)[-1]}
            if settings.calendar in names or _slug(settings.calendar) in names:
                return str(cal.url), False
        if not create:
            raise CalendarMissing(
                f"no calendar named {settings.calendar!r} (it will be created on the first sync)",
                target=settings.id,
            )
        made = principal.make_calendar(name=settings.calendar, cal_id=_slug(settings.calendar))
        if settings.color:
            _set_color(made, settings.color)
        return str(made.url), True
    except CalDAVError:
        raise
    except AuthorizationError:  # the caldav library's 401
        raise boundary.auth_refused(settings.id) from None
    except Exception as exc:  # the library raises many kinds; name the kind, never the credentials
        raise CalDAVError(
            f"discovery failed: {type(exc).__name__}: {_safe(str(exc), settings.password)}",
            target=settings.id,
        ) from None
    finally:
        client.close()


def _set_color(calendar: Any, color: str) -> None:
    try:
        from caldav.elements import ical

        calendar.set_properties([ical.CalendarColor(color)])
    except Exception:  # a colour is a nicety; some servers refuse it
        return


def _safe(text: str, password: str) -> str:
    return text.replace(password, "***") if password else text


class CalendarMissing(CalDAVError):
    """Discovery without creating: the calendar is not there yet."""


async def discover(settings: TargetSettings, *, create: bool = True) -> tuple[str, bool]:
    """The calendar's collection URL (created if missing); ``(url, created)``."""
    return await asyncio.to_thread(_discover_sync, settings, create)


async def check_target(settings: TargetSettings) -> str:
    """For ``calbridge check``: reachable, credentials accepted, calendar there (or creatable)."""
    await choose_auth(settings)
    try:
        url, _ = await discover(settings, create=False)
    except CalendarMissing:
        return f"credentials accepted; calendar {settings.calendar!r} will be created on the first sync"
    return f"credentials accepted; calendar {settings.calendar!r} at {safe_url(url)}"
