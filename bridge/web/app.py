"""The feed listener: ICS feeds with conditional GET and gzip, and subscribe pages.

Nothing else is served here: ``/healthz`` and ``/metrics`` live on the admin listener
(:mod:`bridge.web.admin`), so the feed listener answers 404 for them. An unknown feed and a
wrong secret get the same 404, after the same constant-time comparison. Trailing-slash
redirects are off: a 307 would echo the request's Host header with the secret in it.
"""

from __future__ import annotations

import re
import time
from email.utils import format_datetime, parsedate_to_datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge import metrics
from bridge.model.feed import PublishedFeed
from bridge.web.links import feed_urls
from bridge.web.middleware import (
    SECURITY_HEADERS,
    AccessLog,
    SecurityHeaders,
    log_request,
    redact,
)
from bridge.web.page import PAGE_CSP, index_page, subscribe_page
from bridge.web.portal import PortalOptions, PortalService, portal_routes
from bridge.web.served import ServedFeeds

__all__ = ["NOT_FOUND", "accepts_gzip", "create_app", "redact"]

NOT_FOUND = "Not found\n"


def accepts_gzip(header: str) -> bool:
    """RFC 9110 §12.5.3: gzip if ``gzip`` (or ``*`` when gzip is not named) has q > 0."""
    named: dict[str, float] = {}
    for item in header.lower().split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        if not coding:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        named[coding] = q
    if "gzip" in named:
        return named["gzip"] > 0
    if "x-gzip" in named:
        return named["x-gzip"] > 0
    return named.get("*", 0.0) > 0


def _not_modified(inm: str | None, ims: str | None, feed: PublishedFeed, etag: str) -> bool:
    """RFC 9110 §13.1: If-None-Match (weak comparison) wins over If-Modified-Since."""
    if inm is not None:
        if inm.strip() == "*":
            return True
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return etag in tags or feed.etag in tags
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            return False
        return feed.last_modified <= since
    return False


Headers = list[tuple[bytes, bytes]]
_FEED_ROUTE = re.compile(r"/feeds/([^/]+)/([^/]+)\.ics")
_NOT_FOUND_BODY = NOT_FOUND.encode()
_NOT_FOUND_HEADERS: Headers = [
    (b"cache-control", b"no-store"),
    (b"content-length", str(len(_NOT_FOUND_BODY)).encode()),
    (b"content-type", b"text/plain; charset=utf-8"),
    *SECURITY_HEADERS,
]


def _feed_headers(feed: PublishedFeed, gz: bool, max_age: int) -> tuple[str, Headers, Headers]:
    """The ETag of this variant, the 304's headers and the 200's, built once per published
    feed: a request only picks a list."""
    etag = feed.etag[:-1] + '-gz"' if gz else feed.etag
    common = [
        (b"etag", etag.encode()),
        (b"last-modified", format_datetime(feed.last_modified, usegmt=True).encode()),
        (b"cache-control", f"private, max-age={max_age}".encode()),
        (b"vary", b"Accept-Encoding"),
        (b"content-disposition", f'inline; filename="{feed.feed_id}.ics"'.encode()),
        (b"referrer-policy", b"no-referrer"),
        (b"x-robots-tag", b"noindex, nofollow"),
    ]
    security = [(k, v) for k, v in SECURITY_HEADERS if k != b"referrer-policy"]
    body = feed.gzip_body if gz else feed.body
    full = [
        *common,
        *([(b"content-encoding", b"gzip")] if gz else []),
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"text/calendar; charset=utf-8"),
        *security,
    ]
    return etag, [*common, *security], full


class FeedRoute:
    """``GET``/``HEAD /feeds/<id>/<secret>.ics``, straight from the ASGI scope: the route a
    calendar client polls, most often for a 304. No router, request or response objects and
    no middleware chain between the socket and the answer (measured: bench/serve.py); it
    logs and sets the security headers itself, like :class:`AccessLog` and
    :class:`SecurityHeaders` do for everything else, which goes on to ``app``."""

    def __init__(self, store: ServedFeeds, app: ASGIApp, max_age: int) -> None:
        self.store = store
        self.app = app
        self.max_age = max_age
        self._prepared: dict[tuple[str, bool], tuple[PublishedFeed, tuple[str, Headers, Headers]]]
        self._prepared = {}
        self._counts = {code: metrics.FEED_REQUESTS.labels(code) for code in ("200", "304", "404")}

    def _headers(self, feed: PublishedFeed, gz: bool) -> tuple[str, Headers, Headers]:
        cached = self._prepared.get((feed.feed_id, gz))
        if cached is None or cached[0] is not feed:
            cached = self._prepared[(feed.feed_id, gz)] = (
                feed,
                _feed_headers(feed, gz, self.max_age),
            )
        return cached[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (
            _FEED_ROUTE.fullmatch(scope["path"])
            if scope["type"] == "http" and scope["method"] in ("GET", "HEAD")
            else None
        )
        if route is None:
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        found = self.store.lookup(route.group(1), route.group(2))
        if found is None:
            status, headers, body = 404, _NOT_FOUND_HEADERS, _NOT_FOUND_BODY
        else:
            inm = ims = None
            encodings = None
            for name, value in scope["headers"]:  # the first of each, as Starlette's get()
                if name == b"if-none-match" and inm is None:
                    inm = value.decode("latin-1")
                elif name == b"if-modified-since" and ims is None:
                    ims = value.decode("latin-1")
                elif name == b"accept-encoding" and encodings is None:
                    encodings = value.decode("latin-1")
            gz = accepts_gzip(encodings or "")
            etag, not_modified, full = self._headers(found, gz)
            if _not_modified(inm, ims, found, etag):
                status, headers, body = 304, not_modified, b""
            else:
                status, headers = 200, full
                body = found.gzip_body if gz else found.body
        self._counts[str(status)].inc()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )
        log_request(scope, status, started)


def create_app(
    store: ServedFeeds,
    *,
    public_url: str,
    max_age: int = 300,
    portal: tuple[PortalService, PortalOptions] | None = None,
) -> ASGIApp:
    """The feed listener's app. ``portal``: institution mode's personal pages (``/``,
    ``/connect``, ``/oauth/callback``, ``/me``…); without it ``/`` is the plain index and
    the pages' routes answer 404."""

    def not_found() -> Response:
        metrics.FEED_REQUESTS.labels("404").inc()
        return PlainTextResponse(NOT_FOUND, 404, headers={"cache-control": "no-store"})

    async def page(request: Request) -> Response:
        secret = request.path_params["secret"]
        found = store.lookup(request.path_params["feed_id"], secret)
        if found is None:
            return not_found()
        urls = feed_urls(public_url, found.feed_id, secret, found.name)
        html = subscribe_page(found, urls)
        return HTMLResponse(
            html,
            headers={
                "x-robots-tag": "noindex, nofollow",
                "cache-control": "no-store",
                "content-security-policy": PAGE_CSP,
            },
        )

    async def index(request: Request) -> Response:
        return HTMLResponse(index_page(), headers={"content-security-policy": PAGE_CSP})

    async def missing(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(NOT_FOUND, 404)

    pages = portal_routes(*portal) if portal is not None else [Route("/", index)]
    app = Starlette(
        routes=[
            *pages,
            Route("/feeds/{feed_id}/{secret}", page, methods=["GET"]),
        ],
        exception_handlers={404: missing, 405: missing},
    )
    app.router.redirect_slashes = False
    return FeedRoute(store, AccessLog(SecurityHeaders(app)), max_age)
