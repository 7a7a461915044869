"""One CalDAV calendar calbridge writes into: settings, authentication, discovery.

Discovery (principal, calendar home, the calendar by display name) and creating the calendar
when it is missing use the ``caldav`` library — constructed directly, never through
``get_davclient``, which reads system-wide config files. The collection URL found is cached
by the caller, so discovery happens once, not every cycle.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from caldav.davclient import DAVClient
from caldav.lib.error import AuthorizationError

from bridge.config import CalDAVConfig
from bridge.errors import CalDAVAuthError, CalDAVError, CalDAVUnavailable


@dataclass(frozen=True)
class TargetSettings:
    id: str
    url: str
    username: str
    password: str = field(repr=False)
    calendar: str = "Canvas"
    color: str | None = None
    timeout: float = 30.0
    max_parallel: int = 4
    delete_past: bool = False

    def __repr__(self) -> str:
        return f"TargetSettings(id={self.id!r}, url={self.url!r}, username={self.username!r}, calendar={self.calendar!r})"


def settings_for(config: CalDAVConfig) -> TargetSettings:
    return TargetSettings(
        config.id,
        config.url,
        config.username,
        config.password(),
        config.calendar,
        config.color,
        config.timeout.total_seconds(),
        4,
        config.delete_past,
    )


async def choose_auth(settings: TargetSettings) -> httpx.Auth:
    """Basic, or Digest when the server asks for it (SabreDAV's default)."""
    basic = httpx.BasicAuth(settings.username, settings.password)
    try:
        async with httpx.AsyncClient(timeout=settings.timeout) as client:
            response = await client.request(
                "PROPFIND", settings.url, headers={"Depth": "0"}, auth=basic
            )
    except httpx.TransportError as exc:
        raise CalDAVUnavailable(
            f"cannot reach {settings.url}: {type(exc).__name__}", target=settings.id
        ) from None
    if response.status_code == 401:
        if "digest" in response.headers.get("www-authenticate", "").lower():
            return httpx.DigestAuth(settings.username, settings.password)
        raise CalDAVAuthError(
            "the server refused the username or password", target=settings.id, status=401
        )
    return basic


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "canvas"


def _discover_sync(settings: TargetSettings, create: bool) -> tuple[str, bool]:
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
            raise CalDAVError(
                f"no calendar named {settings.calendar!r} (it will be created on the first sync)",
                target=settings.id,
            )
        made = principal.make_calendar(name=settings.calendar, cal_id=_slug(settings.calendar))
        if settings.color:
            _set_color(made, settings.color)
        return str(made.url), True
    except CalDAVError:
        raise
    except AuthorizationError:
        raise CalDAVAuthError(
            "the server refused the username or password", target=settings.id, status=401
        ) from None
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


async def discover(settings: TargetSettings, *, create: bool = True) -> tuple[str, bool]:
    """The calendar's collection URL (created if missing); ``(url, created)``."""
    return await asyncio.to_thread(_discover_sync, settings, create)


async def check_target(settings: TargetSettings) -> str:
    """For ``calbridge check``: reachable, credentials accepted, calendar there (or creatable)."""
    await choose_auth(settings)
    try:
        url, _ = await discover(settings, create=False)
    except CalDAVError as exc:
        if "will be created" in str(exc):
            return f"credentials accepted; calendar {settings.calendar!r} will be created on the first sync"
        raise
    return f"credentials accepted; calendar {settings.calendar!r} at {url}"
