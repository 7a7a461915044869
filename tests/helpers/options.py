"""The option objects the adapters take, built the way the daemon builds them: through the
configuration schema, so a test gets the schema's defaults (there are no others) and overrides
only what it is about."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import httpx

from bridge.canvas.client import CanvasClient
from bridge.canvas.poller import PollOptions
from bridge.canvas.transport import CanvasLimits
from bridge.config import (
    AccountConfig,
    CalDAVConfig,
    FeedConfig,
    WritebackConfig,
    default_canvas_limits,
)
from bridge.dav.discovery import TargetSettings
from bridge.mapping import FeedOptions
from bridge.sync.decide import Policy

_ACCOUNT = {"id": "test", "canvas_url": "https://canvas.example.edu", "token_env": "UNUSED"}


def feed_options(
    *,
    include: Collection[str] | None = None,
    reservation_uids: Mapping[int, str] | None = None,
    max_bytes: int | None = None,
    **keys: Any,
) -> FeedOptions:
    """``FeedConfig(**keys).options(...)``: keys as in a ``[[feeds]]`` entry (durations may be
    timedeltas); ``max_bytes`` overrides the fixed feed cap."""
    if include is not None:
        keys["include"] = list(include)
    options = FeedConfig(id="test", account="test", **keys).options(reservation_uids or {})
    if max_bytes is not None:
        options = FeedOptions(**{**vars(options), "max_bytes": max_bytes})
    return options


def target_settings(
    target_id: str,
    url: str,
    username: str = "user",
    password: str = "pw",
    *,
    max_parallel: int | None = None,
    **keys: Any,
) -> TargetSettings:
    """``CalDAVConfig(**keys).target_settings(password)`` for a server at ``url`` (any URL a
    test serves, ``memory://`` included); keys as in a ``[[caldav]]`` entry."""
    settings = _caldav(target_id, username, **keys).target_settings(password)
    changes: dict[str, Any] = {"url": url}
    if max_parallel is not None:
        changes["max_parallel"] = max_parallel
    return TargetSettings(**{**vars(settings), **changes})


def canvas_limits(**changes: float) -> CanvasLimits:
    """The limits of an account with the schema's defaults, ``changes`` applied."""
    return CanvasLimits(**{**vars(default_canvas_limits()), **changes})


def poll_options(**keys: Any) -> PollOptions:
    """``AccountConfig(**keys).poll_options()``: keys as in an ``[[accounts]]`` entry."""
    return AccountConfig(**{**_ACCOUNT, **keys}).poll_options()


def event_options(
    *,
    include: Collection[str] | None = None,
    reservation_uids: Mapping[int, str] | None = None,
    **keys: Any,
) -> FeedOptions:
    """What the daemon renders a CalDAV calendar's events with:
    ``CalDAVConfig(**keys).event_options(...)``; keys as in a ``[[caldav]]`` entry."""
    if include is not None:
        keys["include"] = list(include)
    config = CalDAVConfig(
        id="test",
        account="test",
        url="https://dav.example.com/",
        username="user",
        password_env="UNUSED",
        **keys,
    )
    return config.event_options(reservation_uids or {})


def canvas_client(url: str, token: str | httpx.Auth, **kw: Any) -> CanvasClient:
    """A client with the limits of an account that sets none (``limits=`` overrides them)."""
    kw.setdefault("limits", canvas_limits())
    return CanvasClient(url, token, **kw)


def writeback_policy(**keys: Any) -> Policy:
    """``CalDAVConfig(**keys).writeback_policy(WritebackConfig())``: keys as in a ``[[caldav]]``
    entry, the ``[writeback]`` thresholds the schema's defaults."""
    return _caldav("test", "user", **keys).writeback_policy(WritebackConfig())


def _caldav(target_id: str, username: str, **keys: Any) -> CalDAVConfig:
    """A ``[[caldav]]`` entry with ``keys``, the rest filled in."""
    return CalDAVConfig(
        id=target_id,
        account="test",
        url="https://dav.example.com/",
        username=username,
        password_env="UNUSED",
        **keys,
    )
