"""One Canvas request, done right: auth, retries, throttling, pacing, error mapping.

Canvas answers throttling with 429 or with 403 and the plain-text body "… (Rate Limit
Exceeded)"; both are retried with backoff. 5xx, resets and timeouts are retried with bounded,
jittered exponential backoff — but a write (reserve, cancel) that may already have reached
Canvas is never retried blindly: the caller's write-back journal resolves it. A bad token fails
at once. Every error names the request by method and path, never by token or query string.

A hostile or broken server cannot hold the daemon: each body is streamed and cut off past
``max_response_bytes`` (memory stays bounded, gzip bombs included — decoded bytes count), and
each request has a total deadline (``request_deadline``), not only a per-read timeout, so a
server trickling a byte a second is cut off too. The poller adds a deadline per poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from bridge import errors
from bridge.canvas.fast_get import FastGets

log = logging.getLogger("bridge.canvas")

RETRYABLE_STATUS = {500, 502, 503, 504}
# headers a copy of an answer drops: its body is decoded already (no encoding, a new length)
_DECODED = ("content-encoding", "content-length", "transfer-encoding")
PACE_BELOW = 100.0  # start pacing when x-rate-limit-remaining drops below this


@dataclass(frozen=True)
class ResponseInfo:
    """What the ``on_response`` hook learns about each HTTP response (for metrics)."""

    method: str
    path: str
    status: int
    elapsed: float
    throttled: bool
    rate_limit_remaining: float | None


@dataclass(frozen=True)
class CanvasLimits:
    """Bounds on what one Canvas account may cost: bytes per answer, seconds per request
    (retries each get their own) and seconds per whole poll. Built by the configuration
    (``AccountConfig.canvas_limits``), which holds the defaults."""

    max_response_bytes: int
    request_deadline: float
    poll_deadline: float


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base·2^attempt)]; Retry-After wins when given."""
        if retry_after is not None:
            return min(retry_after, self.backoff_cap)
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))


def is_throttle(response: httpx.Response) -> bool:
    if response.status_code == 429:
        return True
    return response.status_code == 403 and b"Rate Limit Exceeded" in response.content


def _retry_after(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Retry-After in seconds: a number, or an HTTP date (RFC 9110 §10.2.3) from now."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; "-0000" parses as naive
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def _remaining(response: httpx.Response) -> float | None:
    raw = response.headers.get("x-rate-limit-remaining")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _first_message(body: Any) -> str:
    if isinstance(body, dict):
        if isinstance(body.get("errors"), list) and body["errors"]:
            first = body["errors"][0]
            if isinstance(first, dict) and "message" in first:
                return str(first["message"])
        if isinstance(body.get("errors"), dict):
            parts = []
            for field, problems in body["errors"].items():
                for problem in problems if isinstance(problems, list) else [problems]:
                    text = problem.get("message") if isinstance(problem, dict) else problem
                    parts.append(f"{field}: {text}")
            return "; ".join(parts)
        for key in ("message", "error", "errors"):
            if isinstance(body.get(key), str):
                return str(body[key])
    if isinstance(body, list) and body and isinstance(body[0], dict) and "message" in body[0]:
        return str(body[0]["message"])
    return ""


def map_error(method: str, path: str, response: httpx.Response) -> errors.CanvasError:
    """The one place Canvas's statuses and bodies become bridge errors."""
    status = response.status_code
    body = _body(response)
    message = _first_message(body)
    where: dict[str, Any] = {"method": method, "path": path, "status": status}
    if status == 401:
        if "www-authenticate" not in response.headers and "insufficient scopes" in message.lower():
            # "Insufficient scopes on access token.": a permission problem, not a dead token.
            return errors.InsufficientScopes(
                "the token's scopes do not allow this endpoint", **where
            )
        if "www-authenticate" in response.headers or "access token" in message.lower():
            lowered = message.lower()
            if "revoked" in lowered:
                return errors.RevokedToken("the Canvas token was revoked", **where)
            if "expired" in lowered:
                return errors.ExpiredToken("the Canvas token has expired", **where)
            if "authorization required" in lowered:
                return errors.InvalidToken("no Canvas token was sent", **where)
            return errors.InvalidToken(
                "Canvas does not accept this token (invalid access token)", **where
            )
        return errors.CanvasNotAuthorized(
            message or "user not authorized to perform that action", **where
        )
    if status == 403:
        if "past appointment" in message:
            return errors.ReservationRefused(message, **where)
        return errors.CanvasNotAuthorized(message or "forbidden", **where)
    if status == 404:
        return errors.CanvasNotFound(message or "not found", **where)
    if (
        status == 400
        and isinstance(body, list)
        and body
        and isinstance(body[0], dict)
        and body[0].get("attribute") == "reservation"
    ):
        return errors.ReservationRefused(
            str(body[0].get("message", "")), reservations=body[0].get("reservations"), **where
        )
    if status in (400, 409, 422):
        return errors.CanvasValidationError(
            message or "Canvas rejected the request", errors=body, **where
        )
    if status >= 500:
        return errors.CanvasUnavailable(f"Canvas answered {status}", **where)
    return errors.CanvasError(message or f"unexpected HTTP {status}", **where)


class Transport:
    """Sends requests for one token with retries, throttling and a concurrency limit.

    ``http`` may be shared with other tokens: the token travels in ``headers`` (or is set by
    ``auth``) with each request, and a path is resolved against this token's ``base_url``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        headers: dict[str, str],
        auth: httpx.Auth | None = None,
        policy: RetryPolicy,
        max_concurrency: int,
        limits: CanvasLimits,
        on_response: Callable[[ResponseInfo], None] | None = None,
        fast: FastGets | None = None,
    ) -> None:
        self._http = http
        # plain-token GETs go through aiohttp when given (see fast_get.py); the rest, httpx
        self._fast = fast if auth is None else None
        self._base_url = base_url
        self._headers = headers
        self._auth = auth
        self._policy = policy
        self.limits = limits
        self._limit = asyncio.Semaphore(max_concurrency)
        self._on_response = on_response
        self._pace_until = 0.0
        self.requests = 0

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        data: Any = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        path = urlsplit(url).path or url
        if isinstance(data, list):
            grouped: dict[str, list[str]] = {}
            for key, value in data:
                grouped.setdefault(key, []).append(value)
            data = grouped
        attempt = 0
        while True:
            await self._pace()
            started = time.monotonic()
            try:
                async with self._limit:
                    self.requests += 1
                    response = await self._send(method, url, path, params, data)
            except (httpx.TransportError, TimeoutError) as exc:
                sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if (sent and not idempotent) or attempt >= self._policy.max_retries:
                    if isinstance(exc, TimeoutError):
                        raise errors.CanvasTimeout(
                            f"no complete answer within {self.limits.request_deadline:g}s"
                            " (request_deadline)",
                            method=method,
                            path=path,
                        ) from None
                    raise errors.CanvasUnavailable(
                        f"Canvas unreachable ({type(exc).__name__})", method=method, path=path
                    ) from None
                attempt += 1
                await asyncio.sleep(self._policy.delay(attempt))
                continue
            throttled = is_throttle(response)
            remaining = _remaining(response)
            self._notify(method, path, response, time.monotonic() - started, throttled, remaining)
            if throttled:
                if attempt >= self._policy.max_retries:
                    raise errors.CanvasThrottled(
                        "Canvas is throttling this token (Rate Limit Exceeded); retries exhausted",
                        method=method,
                        path=path,
                        status=response.status_code,
                        retry_after=self._policy.delay(attempt + 1, _retry_after(response)),
                    )
                attempt += 1
                delay = self._policy.delay(attempt, _retry_after(response))
                log.warning("Canvas throttled %s %s; retrying in %.1fs", method, path, delay)
                await asyncio.sleep(delay)
                continue
            if (
                response.status_code in RETRYABLE_STATUS
                and idempotent
                and attempt < self._policy.max_retries
            ):
                attempt += 1
                delay = self._policy.delay(attempt, _retry_after(response))
                log.info(
                    "Canvas answered %s to %s %s; retrying in %.1fs",
                    response.status_code,
                    method,
                    path,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            self._adjust_pace(remaining)
            if response.status_code >= 400:
                raise map_error(method, path, response)
            return response

    async def _send(
        self, method: str, url: str, path: str, params: Any, data: Any
    ) -> httpx.Response:
        """One exchange within ``request_deadline``, the body read up to ``max_response_bytes``.

        Raises TimeoutError past the deadline (the caller decides about retrying) and
        CanvasResponseTooLarge past the size limit (never retried: the answer will not shrink).
        """
        limit = self.limits.max_response_bytes
        if url.startswith("/"):
            url = self._base_url + url
        if method == "GET" and self._fast is not None:
            return await self._send_fast(self._fast, url, path, params)
        request = self._http.build_request(
            method, url, params=params, data=data, headers=self._headers
        )
        async with asyncio.timeout(self.limits.request_deadline):
            if self._auth is None:
                response = await self._http.send(request, stream=True)
            else:
                response = await self._http.send(request, stream=True, auth=self._auth)
            try:
                declared = response.headers.get("content-length", "")
                chunks: list[bytes] = []
                size = int(declared) if declared.isdigit() else 0
                if size <= limit:
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > limit:
                            break
                        chunks.append(chunk)
            finally:
                await response.aclose()
        if size > limit:
            raise errors.CanvasResponseTooLarge(
                f"Canvas answered more than {limit} bytes (max_response_bytes); stopped reading",
                method=method,
                path=path,
                status=response.status_code,
            )
        # The body is decoded already: the copy must not claim an encoding or length.
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _DECODED]
        return httpx.Response(
            response.status_code, headers=headers, content=b"".join(chunks), request=request
        )

    async def _send_fast(self, fast: FastGets, url: str, path: str, params: Any) -> httpx.Response:
        """:meth:`_send` for a GET through aiohttp: the same deadline, size limit and answer."""
        limit = self.limits.max_response_bytes
        async with (
            asyncio.timeout(self.limits.request_deadline),
            fast.get(url, params, self._headers) as (answer, body),
        ):
            chunks: list[bytes] = []
            declared = answer.content_length
            size = declared if declared is not None and declared > limit else 0
            if size <= limit:
                size = 0
                async for chunk in body:
                    size += len(chunk)
                    if size > limit:
                        break
                    chunks.append(chunk)
        if size > limit:
            raise errors.CanvasResponseTooLarge(
                f"Canvas answered more than {limit} bytes (max_response_bytes); stopped reading",
                method="GET",
                path=path,
                status=answer.status,
            )
        headers = [(k, v) for k, v in answer.headers if k.lower() not in _DECODED]
        return httpx.Response(answer.status, headers=headers, content=b"".join(chunks))

    def _notify(
        self,
        method: str,
        path: str,
        response: httpx.Response,
        elapsed: float,
        throttled: bool,
        remaining: float | None,
    ) -> None:
        log.debug("%s %s -> %s (%.3fs)", method, path, response.status_code, elapsed)
        if self._on_response is not None:
            self._on_response(
                ResponseInfo(method, path, response.status_code, elapsed, throttled, remaining)
            )

    def _adjust_pace(self, remaining: float | None) -> None:
        """Slow down before Canvas throttles: the lower the bucket, the longer the pause."""
        if remaining is not None and remaining < PACE_BELOW:
            self._pace_until = time.monotonic() + (PACE_BELOW - remaining) / PACE_BELOW * 2.0

    async def _pace(self) -> None:
        wait = self._pace_until - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)


def decode_json(method: str, path: str, response: httpx.Response) -> Any:
    """The body as JSON, or CanvasBadResponse naming the request."""
    try:
        return json.loads(response.content)
    except ValueError:
        kind = response.headers.get("content-type", "unknown content type").split(";")[0]
        raise errors.CanvasBadResponse(
            f"Canvas answered a body that is not JSON ({kind}, {len(response.content)} bytes)",
            method=method,
            path=path,
            status=response.status_code,
        ) from None
