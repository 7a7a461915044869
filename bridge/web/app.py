"""The feed listener: ICS feeds with conditional GET and gzip, and subscribe pages.

Nothing else is served here: ``/healthz`` and ``/metrics`` live on the admin listener
(:mod:`bridge.web.admin`), so the feed listener answers 404 for them. An unknown feed and a
wrong secret get the same 404, after the same constant-time comparison. Trailing-slash
redirects are off: a 307 would echo the request's Host header with the secret in it.
"""

from __future__ import annotations

from email.utils import format_datetime, parsedate_to_datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from bridge import metrics
from bridge.model.feed import PublishedFeed
from bridge.web.links import feed_urls
from bridge.web.middleware import AccessLog, SecurityHeaders, redact
from bridge.web.page import PAGE_CSP, index_page, subscribe_page
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


def _not_modified(request: Request, feed: PublishedFeed, etag: str) -> bool:
    """RFC 9110 §13.1: If-None-Match (weak comparison) wins over If-Modified-Since."""
    inm = request.headers.get("if-none-match")
    if inm is not None:
        if inm.strip() == "*":
            return True
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return etag in tags or feed.etag in tags
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            return False
        return feed.last_modified <= since
    return False


def _feed_headers(feed: PublishedFeed, etag: str, max_age: int) -> dict[str, str]:
    return {
        "etag": etag,
        "last-modified": format_datetime(feed.last_modified, usegmt=True),
        "cache-control": f"private, max-age={max_age}",
        "vary": "Accept-Encoding",
        "content-disposition": f'inline; filename="{feed.feed_id}.ics"',
        "referrer-policy": "no-referrer",
        "x-robots-tag": "noindex, nofollow",
    }


def create_app(store: ServedFeeds, *, public_url: str, max_age: int = 300) -> ASGIApp:
    def not_found() -> Response:
        metrics.FEED_REQUESTS.labels("404").inc()
        return PlainTextResponse(NOT_FOUND, 404, headers={"cache-control": "no-store"})

    async def feed(request: Request) -> Response:
        found = store.lookup(request.path_params["feed_id"], request.path_params["secret"])
        if found is None:
            return not_found()
        gz = accepts_gzip(request.headers.get("accept-encoding", ""))
        etag = found.etag[:-1] + '-gz"' if gz else found.etag
        headers = _feed_headers(found, etag, max_age)
        if _not_modified(request, found, etag):
            metrics.FEED_REQUESTS.labels("304").inc()
            return Response(status_code=304, headers=headers)
        body = found.gzip_body if gz else found.body
        if gz:
            headers["content-encoding"] = "gzip"
        metrics.FEED_REQUESTS.labels("200").inc()
        if request.method == "HEAD":
            headers["content-length"] = str(len(body))
            return Response(
                status_code=200, headers=headers, media_type="text/calendar; charset=utf-8"
            )
        return Response(body, 200, headers=headers, media_type="text/calendar; charset=utf-8")

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

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/feeds/{feed_id}/{secret}.ics", feed, methods=["GET", "HEAD"]),
            Route("/feeds/{feed_id}/{secret}", page, methods=["GET"]),
        ],
        exception_handlers={404: missing, 405: missing},
    )
    app.router.redirect_slashes = False
    return AccessLog(SecurityHeaders(app))
