"""The test control surface under ``/_sim/`` — only mounted when asked for.

It lets a test or a person set the clock, inject faults, revoke tokens and read request counts
over HTTP, for a simulator running in another process. In-process tests use the same objects
directly (``world.clock``, ``world.faults``, ``world.stats``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.model.canvas import to_utc
from bridge.simulator.world import World

FAULT_KINDS = {
    "status",
    "delay",
    "throttle403",
    "throttle429",
    "malformed",
    "html",
    "truncated",
    "reset",
}


def _json(body: object, status: int = 200) -> Response:
    return Response(json.dumps(body), status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def control_routes(world: World) -> list[Route]:
    async def clock(request: Request) -> Response:
        if request.method == "POST":
            body = await _body(request)
            if "now" in body:
                now = to_utc(body["now"])
                if not isinstance(now, datetime):
                    return _json({"error": "now must be an ISO 8601 time"}, 400)
                world.clock.set(now)
            if "advance" in body:
                world.clock.advance(float(body["advance"]))
        return _json({"now": world.clock.now().isoformat()})

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            world.faults.clear()
            return _json({"ok": True})
        body = await _body(request)
        kind = body.get("kind")
        if kind not in FAULT_KINDS:
            return _json({"error": f"kind must be one of {sorted(FAULT_KINDS)}"}, 400)
        count = body.get("count", 1)
        world.faults.add(
            kind,
            path=str(body.get("path", ".*")),
            count=None if count is None else int(count),
            status=int(body.get("status", 503)),
            delay=float(body.get("delay", 0)),
            method=body.get("method"),
        )
        return _json({"ok": True}, 201)

    async def tokens(request: Request) -> Response:
        body = await _body(request)
        state = body.get("state", "revoked")
        if state not in ("revoked", "expired"):
            return _json({"error": "state must be revoked or expired"}, 400)
        with world.lock:
            world.revoke_token(request.path_params["token"], state)
        return _json({"ok": True})

    async def stats(request: Request) -> Response:
        if request.method == "DELETE":
            world.stats.reset()
        return _json(world.stats.as_dict())

    async def throttle(request: Request) -> Response:
        body = await _body(request)
        with world.lock:
            for key in ("hwm", "outflow", "cost"):
                if key in body:
                    setattr(world.throttle, key, float(body[key]))
            if body.get("mode") in (403, 429):
                world.throttle.mode = body["mode"]
            world.throttle.levels.clear()
        return _json({"hwm": world.throttle.hwm, "mode": world.throttle.mode})

    return [
        Route("/_sim/clock", clock, methods=["GET", "POST"]),
        Route("/_sim/faults", faults, methods=["POST", "DELETE"]),
        Route("/_sim/tokens/{token}", tokens, methods=["POST"]),
        Route("/_sim/stats", stats, methods=["GET", "DELETE"]),
        Route("/_sim/throttle", throttle, methods=["POST"]),
    ]
