"""ASGI middleware shared by the feed and admin listeners: the access log and security headers.

Feed URLs carry secrets, so uvicorn's access log is off and requests are logged here with the
secret replaced and the path escaped: the path arrives percent-decoded, and a decoded ``%0A``
would otherwise start a forged log line.
"""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("bridge.web")

_FEED_PATH = re.compile(r"^(/feeds/[^/]+/)[^/]+?(\.ics)?$")
_UNSAFE = re.compile(r"[^\x21-\x7e]|%")

# Sent on every response of both listeners (RFC 7034, CSP Level 3).
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def redact(path: str) -> str:
    """``/feeds/<id>/<secret>.ics`` → ``/feeds/<id>/<redacted>.ics`` for logs."""
    return _FEED_PATH.sub(lambda m: f"{m.group(1)}<redacted>{m.group(2) or ''}", path)


def escape_path(path: str) -> str:
    """Percent-encode every byte outside printable ASCII (and ``%`` itself) for a log line."""
    return _UNSAFE.sub(
        lambda m: "".join(f"%{b:02X}" for b in m.group(0).encode("utf-8", "surrogatepass")), path
    )


def log_request(scope: Scope, status: int, started: float) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info(
            "%s %s %s %.1fms",
            scope["method"],
            escape_path(redact(scope["path"])),
            status,
            (time.monotonic() - started) * 1000,
        )


class AccessLog:
    """One log line per request, secrets redacted, path escaped (uvicorn's own log is off)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            log_request(scope, status, started)


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, add_headers)
