"""The test control surface under ``/_sim/`` — only mounted when asked for.

It lets a test or a person set the clock (OAuth access tokens expire an hour later on it),
inject faults, revoke tokens, add or turn off developer keys, delete a user's OAuth tokens and
read request counts over HTTP, for a simulator running in another process. In-process tests use the same objects
directly (``world.clock``, ``world.faults``, ``world.stats``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
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


def oauth_state(world: World) -> dict[str, Any]:
    """The developer keys and live grants, without secrets or tokens."""
    return {
        "keys": [
            {
                "client_id": k.client_id,
                "redirect_uris": k.redirect_uris,
                "scopes": k.scopes,
                "active": k.active,
            }
            for k in world.oauth.keys.values()
        ],
        "grants": [
            {
                "client_id": g.key.client_id,
                "user_id": g.user_id,
                "scopes": g.scopes,
                "purpose": g.purpose,
                "expires_at": g.expires_at.isoformat(),
                "refreshes": g.refreshes,
            }
            for g in world.oauth.grants
        ],
    }


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

    async def oauth(request: Request) -> Response:
        """GET: keys and grants (no secrets or tokens). POST: add or replace a developer key."""
        if request.method == "POST":
            body = await _body(request)
            uris = body.get("redirect_uris")
            scopes = body.get("scopes")
            if not body.get("client_id") or not body.get("secret") or not isinstance(uris, list):
                return _json({"error": "need client_id, secret and redirect_uris (a list)"}, 400)
            if scopes is not None and not isinstance(scopes, list):
                return _json({"error": "scopes must be a list (or absent: not enforced)"}, 400)
            with world.lock:
                world.oauth.add_key(str(body["client_id"]), str(body["secret"]), uris, scopes)
        with world.lock:
            return _json(oauth_state(world))

    async def key_off(request: Request) -> Response:
        with world.lock:
            if request.path_params["client_id"] not in world.oauth.keys:
                return _json({"error": "no such developer key"}, 404)
            world.oauth.deactivate(request.path_params["client_id"])
            return _json(oauth_state(world))

    async def user_tokens(request: Request) -> Response:
        """The user deletes the app's tokens on their Canvas profile page."""
        try:
            user_id = int(request.path_params["user_id"])
        except ValueError:
            return _json({"error": "user id must be a number"}, 400)
        with world.lock:
            return _json({"deleted": world.oauth.delete_for_user(user_id)})

    async def stats(request: Request) -> Response:
        if request.method == "DELETE":
            world.stats.reset()
        return _json(world.stats.as_dict())

    async def requests(request: Request) -> Response:
        """The request log (since the last DELETE of /_sim/stats): who asked what, when."""
        return _json(world.stats.requests())

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

    def route(
        path: str,
        handler: Callable[[Request], Awaitable[Response]],
        methods: list[str],
        *,
        changes: bool = True,
    ) -> Route:
        """``changes``: its writes can change what an API request is answered (the clock, a
        token, a key), so no kept answer outlives them; faults, throttle and statistics are
        applied before the answer or counted after it."""

        async def run(request: Request) -> Response:
            if changes and request.method != "GET":
                world.changed()
            return await handler(request)

        return Route(path, run, methods=methods)

    return [
        route("/_sim/clock", clock, methods=["GET", "POST"]),
        route("/_sim/faults", faults, methods=["POST", "DELETE"], changes=False),
        route("/_sim/tokens/{token}", tokens, methods=["POST"]),
        route("/_sim/stats", stats, methods=["GET", "DELETE"], changes=False),
        route("/_sim/requests", requests, methods=["GET"], changes=False),
        route("/_sim/oauth", oauth, methods=["GET", "POST"]),
        route("/_sim/oauth/keys/{client_id}/deactivate", key_off, methods=["POST"]),
        route("/_sim/oauth/users/{user_id}/tokens", user_tokens, methods=["DELETE"]),
        route("/_sim/throttle", throttle, methods=["POST"], changes=False),
    ]
