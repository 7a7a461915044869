"""Response helpers shared by the simulator's endpoints: JSON, pages, ids, times."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from bridge.model.canvas import to_utc
from bridge.simulator import paging
from bridge.simulator.rules import NOT_FOUND, SimError


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status, headers=headers, media_type="application/json")


def base_url(request: Request, path: str) -> str:
    return f"{request.url.scheme}://{request.url.netloc}{path}"


def paged(
    request: Request,
    items: list[Any],
    *,
    bookmark: bool = False,
    base_path: str | None = None,
    wrap: str | None = None,
) -> Response:
    params = list(request.query_params.multi_items())
    base = base_url(request, base_path or request.url.path)
    chunk, link = (paging.bookmarked if bookmark else paging.numbered)(items, base, params)
    body: Any = {wrap: chunk} if wrap else chunk
    return json_response(body, headers={"link": link})


def path_id(request: Request, name: str = "id") -> int:
    try:
        return int(request.path_params[name])
    except ValueError as exc:
        raise SimError(404, NOT_FOUND) from exc


def parse_time(raw: str) -> datetime:
    try:
        value = to_utc(raw)
    except ValueError as exc:
        raise SimError(
            400,
            {
                "errors": {
                    "appointments": [
                        {
                            "attribute": "appointments",
                            "type": "invalid",
                            "message": f"invalid time {raw!r}",
                        }
                    ]
                }
            },
        ) from exc
    if not isinstance(value, datetime):
        raise SimError(
            400,
            {
                "errors": {
                    "appointments": [
                        {"attribute": "appointments", "type": "invalid", "message": "missing time"}
                    ]
                }
            },
        )
    return value
