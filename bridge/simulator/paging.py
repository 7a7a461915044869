"""Canvas's pagination (``canvas-behaviour.md`` §4): numbered pages and bookmarks.

Link URLs are built as Canvas builds them: the endpoint's base URL, the request's query
parameters minus ``page``/``per_page``/``access_token``/``api_key`` sorted and bracket-escaped,
then ``&page=…&per_page=…``; rels in the order current, next, prev, first, last, joined with a
bare comma.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any, TypeVar
from urllib.parse import quote

T = TypeVar("T")

PER_PAGE = 10
MAX_PER_PAGE = 100
_DROPPED = {"page", "per_page", "access_token", "api_key"}


def per_page(params: Sequence[tuple[str, str]]) -> int:
    raw = dict(params).get("per_page")
    if raw is None:
        return PER_PAGE
    try:
        value = int(raw)
    except ValueError:
        return 1
    return min(max(value, 1), MAX_PER_PAGE)


def _query(params: Sequence[tuple[str, str]]) -> str:
    kept = sorted((k, v) for k, v in params if k not in _DROPPED)
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in kept)


def _url(base_url: str, params: Sequence[tuple[str, str]], page: str, size: int) -> str:
    query = _query(params)
    sep = "&" if "?" in base_url else "?"
    middle = f"{query}&" if query else ""
    return f"{base_url}{sep}{middle}page={page}&per_page={size}"


def _header(links: list[tuple[str, str]]) -> str:
    return ",".join(f'<{url}>; rel="{rel}"' for rel, url in links)


def numbered(
    items: Sequence[T], base_url: str, params: Sequence[tuple[str, str]]
) -> tuple[list[T], str]:
    """One numbered page of ``items`` and its ``link`` header (pages past the end are [])."""
    size = per_page(params)
    try:
        page = max(int(dict(params).get("page", "1")), 1)
    except ValueError:
        page = 1
    last = max((len(items) + size - 1) // size, 1)
    chunk = list(items[(page - 1) * size : page * size])
    links = [("current", _url(base_url, params, str(page), size))]
    if page < last:
        links.append(("next", _url(base_url, params, str(page + 1), size)))
    if page > 1:
        links.append(("prev", _url(base_url, params, str(page - 1), size)))
    links.append(("first", _url(base_url, params, "1", size)))
    links.append(("last", _url(base_url, params, str(last), size)))
    return chunk, _header(links)


def _encode_bookmark(offset: int) -> str:
    raw = json.dumps([offset]).encode()
    return "bookmark:" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_bookmark(token: str) -> int:
    """An undecodable bookmark is the first page, as in Canvas."""
    if not token.startswith("bookmark:"):
        return 0
    payload = token.removeprefix("bookmark:")
    try:
        decoded: Any = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return max(int(decoded[0]), 0)
    except (ValueError, TypeError, IndexError, KeyError):
        return 0


def bookmarked(
    items: Sequence[T], base_url: str, params: Sequence[tuple[str, str]]
) -> tuple[list[T], str]:
    """One bookmark page: ``page=first``, then ``page=bookmark:…``; no prev, no last."""
    size = per_page(params)
    token = dict(params).get("page", "first")
    offset = _decode_bookmark(token)
    chunk = list(items[offset : offset + size])
    current = "first" if offset == 0 else _encode_bookmark(offset)
    links = [("current", _url(base_url, params, current, size))]
    if offset + size < len(items):
        links.append(("next", _url(base_url, params, _encode_bookmark(offset + size), size)))
    links.append(("first", _url(base_url, params, "first", size)))
    return chunk, _header(links)
