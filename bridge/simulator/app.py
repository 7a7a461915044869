"""The simulator's HTTP surface: Canvas's endpoints over a :class:`World`.

Handlers stay thin: parameters in, a rule from :mod:`rules`, a shape from :mod:`serialize`,
a page from :mod:`paging`. The gate in front of them does what Canvas's middleware does —
authentication, throttling, the rate-limit headers — plus the injected faults and statistics.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.simulator import rules
from bridge.simulator import serialize as ser
from bridge.simulator.control import control_routes
from bridge.simulator.oauth import WWW_AUTH, authenticate, oauth_routes
from bridge.simulator.requests import Params
from bridge.simulator.responses import json_response, paged, path_id
from bridge.simulator.rules import NOT_FOUND, SimError
from bridge.simulator.world import Answer, Fault, SimUser, World

Handler = Callable[[Request, World, SimUser, Params], Awaitable[Response]]


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query_params.get("access_token")


def _fault_response(fault: Fault) -> Response | None:
    if fault.kind == "status":
        code = {500: "internal_server_error", 502: "bad_gateway", 503: "service_unavailable"}
        body = {
            "errors": [
                {"message": "An error occurred.", "error_code": code.get(fault.status, "error")}
            ]
        }
        return json_response(body, fault.status)
    if fault.kind in ("throttle403", "throttle429"):
        return throttled(403 if fault.kind == "throttle403" else 429)
    if fault.kind == "malformed":
        return Response(
            '{"conferences": [{"id": 1, "title": "cut', 200, media_type="application/json"
        )
    if fault.kind == "html":
        return Response(
            "<html><body><h1>Canvas is down for maintenance</h1></body></html>",
            200,
            media_type="text/html",
        )
    if fault.kind == "truncated":
        return Response('[{"id": 1}', 200, media_type="application/json")
    if fault.kind == "reset":
        # Declares more bytes than it sends: the connection dies mid-response.
        return Response(
            b"{", 200, headers={"content-length": "4096"}, media_type="application/json"
        )
    return None


def throttled(status: int) -> Response:
    """Canvas's throttled answer: plain text, no Retry-After (canvas-behaviour §5)."""
    reason = "Forbidden" if status == 403 else "Too Many Requests"
    return Response(
        f"{status} {reason} (Rate Limit Exceeded)\n",
        status,
        headers={"x-rate-limit-remaining": "0.0"},
        media_type="text/plain; charset=utf-8",
    )


def endpoint(
    world: World, handler: Handler, scope: str
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler in Canvas's gate: faults, auth, throttle, headers, stats. ``scope`` is
    the route's scope name (``url:GET|/api/v1/users/:id``), checked for OAuth tokens."""

    async def run(request: Request) -> Response:
        path = request.url.path
        response = await _gate(request, world, handler, scope)
        user_id = getattr(request.state, "user_id", None)
        world.stats.record(request.method, path, response.status_code, scope, user_id)
        return response

    return run


async def _gate(request: Request, world: World, handler: Handler, scope: str) -> Response:
    fault = world.faults.take(request.method, request.url.path)
    if fault is not None:
        if fault.kind == "delay":
            await asyncio.sleep(fault.delay)
        else:
            response = _fault_response(fault)
            if response is not None:
                return response
    token = _token(request)
    if not token:
        body = {"status": "unauthenticated", "errors": [{"message": "user authorization required"}]}
        return json_response(body, 401, WWW_AUTH)
    with world.lock:
        user = world.user_by_token(token)
        if user is None and world.oauth.grants:
            # Not a personal access token: an OAuth one (its own expiry and scopes).
            found = authenticate(world, token, scope)
            if isinstance(found, Response):
                return found
            user = found
        elif user is None or user.token_state != "active":
            state = user.token_state if user else "invalid"
            message = {
                "invalid": "Invalid access token.",
                "revoked": "Revoked access token.",
                "expired": "Expired access token.",
            }[state]
            return json_response({"errors": [{"message": message}]}, 401, WWW_AUTH)
        allowed, remaining = world.throttle.charge(token, time.monotonic())
    request.state.user_id = user.id
    if not allowed:
        return throttled(world.throttle.mode)
    try:
        with world.lock:
            now, url = world.clock.now(), str(request.url)
            cached = world.answers.get(user.id, url, now)
        if cached is not None:
            response = Response(cached.body, cached.status)
            response.raw_headers = list(cached.headers)
        else:
            params = await Params.read(request)
            with world.lock:
                try:
                    response = await handler(request, world, user, params)
                finally:
                    if request.method != "GET":
                        world.changed()  # it may have written: no answer cached before it
                if (
                    request.method == "GET"
                    and response.status_code == 200
                    and world.clock.now() == now  # answered in the second it is kept for
                ):
                    answer = Answer(
                        response.status_code, bytes(response.body), tuple(response.raw_headers)
                    )
                    world.answers.put(user.id, url, now, answer)
    except SimError as err:
        if isinstance(err.body, str):
            response = Response(err.body, err.status, media_type="text/plain")
        else:
            response = json_response(err.body, err.status)
    response.headers["x-request-cost"] = f"{world.throttle.cost:.10f}"
    response.headers["x-rate-limit-remaining"] = f"{remaining:.1f}"
    return response


# --- users and conferences ------------------------------------------------------------------


async def users_self(request: Request, world: World, user: SimUser, params: Params) -> Response:
    return json_response(ser.profile_json(user))


def _live(world: World, conf: Any) -> bool:
    from datetime import timedelta

    now = world.clock.now()
    started = conf.started_at
    return bool(
        started
        and now - timedelta(days=1) <= started <= now
        and (conf.ended_at is None or conf.ended_at > now)
    )


def _ordered(confs: list[Any]) -> list[Any]:
    return sorted(confs, key=lambda c: (c.created_at, c.id), reverse=True)


async def user_conferences(
    request: Request, world: World, user: SimUser, params: Params
) -> Response:
    mine = []
    for conf in world.conferences_of(user):
        if conf.context_type == "Course":
            course = world.courses.get(conf.context_id)
            if course is None or user.id not in course.roles or not course.conferences_enabled:
                continue
        elif user.id not in world.groups[conf.context_id].members:
            continue
        if params.get("state") == "live" and not _live(world, conf):
            continue
        mine.append(conf)
    items = [ser.conference_json(world, c) for c in _ordered(mine)]
    return paged(request, items, bookmark=True, wrap="conferences")


async def course_conferences(
    request: Request, world: World, user: SimUser, params: Params
) -> Response:
    course = world.courses.get(path_id(request))
    if course is None:
        raise SimError(404, NOT_FOUND)
    role = course.roles.get(user.id)
    if role is None:
        raise SimError(401, rules.UNAUTHORIZED)
    if not course.conferences_enabled:
        raise SimError(404, {"message": "That page has been disabled for this course"})
    confs = [
        c
        for c in world.conferences.values()
        if c.context_type == "Course" and c.context_id == course.id
    ]
    if role == "student":
        confs = [c for c in confs if user.id in c.participants]
    return paged(
        request, [ser.conference_json(world, c) for c in _ordered(confs)], wrap="conferences"
    )


async def group_conferences(
    request: Request, world: World, user: SimUser, params: Params
) -> Response:
    group = world.groups.get(path_id(request))
    if group is None:
        raise SimError(404, NOT_FOUND)
    if user.id not in group.members and world.role_in(user, group.course_id) not in (
        "teacher",
        "ta",
    ):
        raise SimError(401, rules.UNAUTHORIZED)
    confs = [
        c
        for c in world.conferences.values()
        if c.context_type == "Group" and c.context_id == group.id
    ]
    if user.id in group.members:
        confs = [c for c in confs if user.id in c.participants]
    return paged(
        request, [ser.conference_json(world, c) for c in _ordered(confs)], wrap="conferences"
    )


def routes(world: World) -> list[Route]:
    from bridge.simulator.scheduler_api import scheduler_routes

    def r(path: str, handler: Handler, methods: list[str], pattern: str | None = None) -> Route:
        """``pattern``: Canvas's route pattern when it differs from ``path`` with ``{x}``
        spelled ``:x`` (the scope a key must grant is named after it)."""
        canvas_path = pattern or re.sub(r"\{(\w+)\}", r":\1", path)
        scope = f"url:{methods[0]}|{canvas_path}"
        return Route(path, endpoint(world, handler, scope), methods=methods)

    return [
        r("/api/v1/users/self", users_self, ["GET"], "/api/v1/users/:id"),
        r("/api/v1/conferences", user_conferences, ["GET"]),
        r(
            "/api/v1/courses/{id}/conferences",
            course_conferences,
            ["GET"],
            "/api/v1/courses/:course_id/conferences",
        ),
        r(
            "/api/v1/groups/{id}/conferences",
            group_conferences,
            ["GET"],
            "/api/v1/groups/:group_id/conferences",
        ),
        *[r(path, handler, methods) for path, handler, methods in scheduler_routes()],
    ]


async def _not_found(request: Request, exc: Exception) -> Response:
    return json_response(NOT_FOUND, 404)


def create_app(world: World, *, control: bool = False) -> Starlette:
    """The simulator as an ASGI app. ``control`` adds the ``/_sim/`` test surface."""
    all_routes = [*routes(world), *oauth_routes(world)]
    if control:
        all_routes += control_routes(world)
    return Starlette(routes=all_routes, exception_handlers={404: _not_found})
