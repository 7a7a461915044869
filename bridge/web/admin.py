"""The admin listener: ``/healthz`` and ``/metrics``, apart from the public feed listener.

It listens on loopback by default (``[http] admin_listen``) and, with ``admin_token_file``,
asks for ``Authorization: Bearer <token>``. Health is computed in a worker thread with a
deadline: the daemon's health reads the state database, and a locked database must never
stall the event loop that serves the feeds. One computation runs at a time; requests that
arrive meanwhile wait for it, and past the deadline the last report is served, marked
degraded, with the reason.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from datetime import datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from bridge import metrics
from bridge.errors import BridgeError
from bridge.web.health import HealthReport, HealthSource
from bridge.web.middleware import AccessLog, SecurityHeaders

HEALTH_DEADLINE = 2.0


class HealthCache:
    """``await report()``: the health source's report, computed off the loop with a deadline."""

    def __init__(self, source: HealthSource, deadline: float = HEALTH_DEADLINE) -> None:
        self.source = source
        self.deadline = deadline
        self._running: asyncio.Future[HealthReport] | None = None
        self._last = HealthReport("starting")

    async def report(self) -> HealthReport:
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(asyncio.to_thread(self._compute))
        try:
            report = await asyncio.wait_for(asyncio.shield(self._running), self.deadline)
        except TimeoutError:
            return _degraded(
                self._last,
                f"the state database did not answer within {self.deadline:g}s (locked by another process?)",
            )
        self._last = report
        return report

    def _compute(self) -> HealthReport:
        try:
            return self.source.health()
        except BridgeError as exc:
            return _degraded(self._last, str(exc))


def _degraded(last: HealthReport, reason: str) -> HealthReport:
    status = last.status if last.status in ("failing", "starting") else "degraded"
    components = {**last.components, "state": {"status": "degraded", "error": reason}}
    return HealthReport(status, components)


def create_admin_app(
    health: HealthSource,
    *,
    registry: CollectorRegistry | None = None,
    token: str | None = None,
    deadline: float = HEALTH_DEADLINE,
) -> ASGIApp:
    cache = HealthCache(health, deadline)
    registry = registry or metrics.REGISTRY

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        )

    def unauthorized() -> Response:
        return PlainTextResponse(
            "Unauthorized\n", 401, headers={"www-authenticate": 'Bearer realm="calbridge"'}
        )

    async def healthz(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        report = await cache.report()
        body = {"status": report.status, "components": report.components}
        return Response(
            json.dumps(body, default=_json_default, sort_keys=True),
            report.http_status,
            media_type="application/json",
            headers={"cache-control": "no-store"},
        )

    async def metrics_endpoint(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        return Response(generate_latest(registry), headers={"content-type": CONTENT_TYPE_LATEST})

    async def missing(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("Not found\n", 404)

    app = Starlette(
        routes=[Route("/healthz", healthz), Route("/metrics", metrics_endpoint)],
        exception_handlers={404: missing, 405: missing},
    )
    app.router.redirect_slashes = False
    return AccessLog(SecurityHeaders(app))


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
