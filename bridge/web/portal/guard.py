"""Sessions, CSRF tokens and the sign-in rate limit of the personal pages.

The session lives in a cookie signed by Starlette's ``SessionMiddleware`` (itsdangerous) with
a key the daemon derives from the ``[state]`` encryption key, so every replica of a deployment
accepts every other's cookies. It holds the signed-in person (their id and Canvas user id),
when they signed in (the lifetime counts from then, however active the session), the CSRF
token, and the OAuth ``state`` of a sign-in under way. No token or password is ever in it.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware

COOKIE = "calbridge_session"


@dataclass(frozen=True)
class PortalOptions:
    """How the daemon runs the pages (built from ``[http]``, ``[oauth]`` and the vault)."""

    public_url: str
    session_key: bytes = field(repr=False)
    session_lifetime: float  # seconds from signing in
    sign_in_burst: int  # sign-in requests an address may make at once …
    sign_in_per_minute: float  # … and then per minute

    @property
    def secure_cookie(self) -> bool:
        return self.public_url.lower().startswith("https://")


def session_middleware(options: PortalOptions) -> Middleware:
    """The cookie of PAGES.md: signed, HttpOnly, SameSite=Lax, Secure with an https
    public URL, expiring with the session."""
    return Middleware(
        SessionMiddleware,
        secret_key=options.session_key.hex(),
        session_cookie=COOKIE,
        max_age=max(1, int(options.session_lifetime)),
        same_site="lax",
        https_only=options.secure_cookie,
    )


def signed_in(session: dict[str, Any], lifetime: float) -> tuple[int, int] | None:
    """``(person id, Canvas user id)`` of a live sign-in; None (and the session cleared)
    when there is none or it is older than ``lifetime``."""
    person, user, at = session.get("pid"), session.get("uid"), session.get("at")
    if not isinstance(person, int) or not isinstance(user, int) or not isinstance(at, int | float):
        if person is not None:
            session.clear()
        return None
    if time.time() - at > lifetime:
        session.clear()
        return None
    return person, user


def sign_in(session: dict[str, Any], person_id: int, canvas_user_id: int) -> None:
    """A fresh session for the person (nothing of the one before survives, CSRF included)."""
    session.clear()
    session.update(
        pid=person_id, uid=canvas_user_id, at=int(time.time()), csrf=secrets.token_urlsafe(24)
    )


def csrf_token(session: dict[str, Any]) -> str:
    token = session.get("csrf")
    if not isinstance(token, str) or not token:
        token = session["csrf"] = secrets.token_urlsafe(24)
    return token


def csrf_ok(session: dict[str, Any], sent: object) -> bool:
    expected = session.get("csrf")
    return (
        isinstance(expected, str)
        and bool(expected)
        and isinstance(sent, str)
        and hmac.compare_digest(sent.encode(), expected.encode())
    )


def new_state(session: dict[str, Any]) -> str:
    state = session["state"] = secrets.token_urlsafe(24)
    return state


def take_state(session: dict[str, Any], sent: str) -> bool:
    """Whether ``sent`` is this browser's sign-in state; the state is used up either way."""
    expected = session.pop("state", None)
    return (
        isinstance(expected, str)
        and bool(expected)
        and hmac.compare_digest(sent.encode(), expected.encode())
    )


class RateLimit:
    """A token bucket per client address: ``burst`` at once, then ``per_minute``. At most
    ``max_clients`` addresses are remembered (the fullest buckets are forgotten first: they
    would allow a full burst anyway)."""

    def __init__(self, burst: int, per_minute: float, *, max_clients: int = 10_000) -> None:
        self.burst = burst
        self.rate = per_minute / 60.0
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_clients:
            self._forget(now)
        return allowed

    def _forget(self, now: float) -> None:
        def level(item: tuple[str, tuple[float, float]]) -> float:
            tokens, last = item[1]
            return tokens + (now - last) * self.rate

        keep = sorted(self._buckets.items(), key=level)[: self.max_clients // 2]
        self._buckets = dict(keep)
