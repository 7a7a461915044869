"""The feed server: ICS feeds with conditional GET and gzip, subscribe pages, health, metrics.

Feed URLs carry secrets, so uvicorn's access log is off and requests are logged here with the
secret replaced. An unknown feed and a wrong secret get the same 404, after the same
constant-time comparison.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge import metrics
from bridge.web.health import HealthSource
from bridge.web.links import feed_urls
from bridge.web.page import index_page, subscribe_page
from bridge.web.store import FeedStore, PublishedFeed

log = logging.getLogger("bridge.web")

_FEED_PATH = re.compile(r"^(/feeds/[^/]+/)[^/]+?(\.ics)?$")
NOT_FOUND = "Not found\n"


def redact(path: str) -> str:
    """``/feeds/<id>/<secret>.ics`` → ``/feeds/<id>/<redacted>.ics`` for logs."""
    return _FEED_PATH.sub(lambda m: f"{m.group(1)}<redacted>{m.group(2) or ''}", path)


class AccessLog:
    """One log line per request, with feed secrets redacted (uvicorn's own log is off)."""

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
            log.info(
                "%s %s %s %.1fms",
                scope["method"],
                redact(scope["path"]),
                status,
                (time.monotonic() - started) * 1000,
            )


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


def create_app(
    store: FeedStore,
    health: HealthSource,
    *,
    public_url: str,
    metrics_registry: CollectorRegistry | None = None,
    max_age: int = 300,
) -> ASGIApp:
    registry = metrics_registry or metrics.REGISTRY

    def not_found() -> Response:
        metrics.FEED_REQUESTS.labels("404").inc()
        return PlainTextResponse(NOT_FOUND, 404, headers={"cache-control": "no-store"})

    async def feed(request: Request) -> Response:
        found = store.lookup(request.path_params["feed_id"], request.path_params["secret"])
        if found is None:
            return not_found()
        gz = "gzip" in request.headers.get("accept-encoding", "").lower()
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
                "referrer-policy": "no-referrer",
                "x-robots-tag": "noindex, nofollow",
                "cache-control": "no-store",
                "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:",
            },
        )

    async def healthz(request: Request) -> Response:
        report = health.health()
        body = {"status": report.status, "components": report.components}
        return Response(
            json.dumps(body, default=_json_default, sort_keys=True),
            report.http_status,
            media_type="application/json",
        )

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(registry), headers={"content-type": CONTENT_TYPE_LATEST})

    async def index(request: Request) -> Response:
        return HTMLResponse(index_page())

    async def missing(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(NOT_FOUND, 404)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/healthz", healthz),
            Route("/metrics", metrics_endpoint),
            Route("/feeds/{feed_id}/{secret}.ics", feed, methods=["GET", "HEAD"]),
            Route("/feeds/{feed_id}/{secret}", page, methods=["GET"]),
        ],
        exception_handlers={404: missing, 405: missing},
    )
    return AccessLog(app)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
