"""The async Canvas API client: one typed method per endpoint calbridge uses.

Covers every endpoint of the Conferences and Appointment Groups API documents, plus the
Calendar Events calls the bridge needs (reserve, cancel, show) and ``/users/self``. Lists are
followed through the ``Link`` header (numbered and bookmark pages alike, URLs treated as
opaque) with ``per_page=100`` — but only within the account's own origin (scheme, host and
port of ``canvas_url``): the token goes nowhere else. Writes are form-encoded the way Canvas
documents them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, cached_property
from types import TracebackType
from typing import Any, Generic, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from bridge import errors
from bridge.canvas.fast_get import FastGets, own_fast_gets
from bridge.canvas.transport import CanvasLimits, ResponseInfo, RetryPolicy, Transport, decode_json
from bridge.model.canvas import (
    AppointmentGroup,
    CalendarEvent,
    Conference,
    Group,
    Profile,
    User,
)

M = TypeVar("M", bound=BaseModel)

PER_PAGE = 100
MAX_PAGES = 1000
_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?([a-z]+)"?', re.IGNORECASE)


# A lone surrogate can reach a decoded JSON string only as a \\uD800-\\uDFFF escape or as the
# raw bytes of a surrogate (json.loads decodes bytes with "surrogatepass"); a UTF-8 body with
# neither holds none, and its items skip the per-item check of CanvasModel.model_validate (one
# json.dumps of each item: a third of the parsing of an unchanged poll).
_MAY_HOLD_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


@cache
def _page_of(model: type[M]) -> TypeAdapter[list[M]]:
    """Validates a whole page in one call (no per-item Python)."""
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def parse_one(model: type[M], data: Any, method: str, path: str) -> M:
    """One Canvas object; CanvasBadResponse naming the request and the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise errors.CanvasBadResponse(
            f"unexpected {model.__name__} from Canvas: {where}: {first['msg']}",
            method=method,
            path=path,
        ) from None


def _page_items(content: bytes, key: str | None, path: str, kind: str) -> list[Any]:
    """The items of one page of a list: the JSON body, unwrapped by ``key``. ``kind``: the
    page's content type, for the error."""
    try:
        data = json.loads(content)
    except ValueError:
        raise errors.CanvasBadResponse(
            f"Canvas answered a body that is not JSON ({kind}, {len(content)} bytes)",
            method="GET",
            path=path,
            status=200,
        ) from None
    if key is not None and isinstance(data, dict):
        data = data.get(key, [])
    if not isinstance(data, list):
        raise errors.CanvasBadResponse(
            f"expected a list, got {type(data).__name__}", method="GET", path=path
        )
    return data


def parse_page(model: type[M], data: list[Any], content: bytes, path: str) -> list[M]:
    """A page of a list, validated the way :func:`parse_one` does each item."""
    if (
        json.detect_encoding(content) not in ("utf-8", "utf-8-sig")  # UTF-16/32: not scanned
        or _MAY_HOLD_SURROGATE.search(content) is not None
    ):
        return [parse_one(model, entry, "GET", path) for entry in data]
    try:
        return _page_of(model).validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "body"  # after the item index
        raise errors.CanvasBadResponse(
            f"unexpected {model.__name__} from Canvas: {where}: {first['msg']}",
            method="GET",
            path=path,
        ) from None


@dataclass(frozen=True)
class RawList(Generic[M]):
    """The pages of one list as Canvas sent them (bytes), validated only by :meth:`parse`:
    a caller can compare them with the last poll's first (see :meth:`digest`)."""

    model: type[M]
    path: str
    key: str | None
    pages: tuple[bytes, ...]
    kinds: tuple[str, ...]  # each page's content type (for errors)

    @cached_property
    def page_digests(self) -> tuple[bytes, ...]:
        """Each page's SHA-256, computed once (for :meth:`digest` and :meth:`parse`)."""
        return tuple(hashlib.sha256(page).digest() for page in self.pages)

    def digest(self, into: Any) -> None:
        """Feed the list's path and pages into the hash ``into`` (each page by its SHA-256)."""
        into.update(f"{self.path}\0{len(self.pages)}\0".encode())
        for digest in self.page_digests:
            into.update(digest)

    def parse(
        self,
        last: Mapping[bytes, list[M]] | None = None,
        keep: dict[bytes, list[M]] | None = None,
    ) -> list[M]:
        """The list's items. ``last``: items parsed before, by the SHA-256 of their page's
        bytes — a page found there is not parsed again, its items are those very (frozen)
        objects. ``keep``: filled with this list's pages, by digest, for the next call."""
        if last is None and keep is None:
            digests: Iterable[bytes | None] = (None for _ in self.pages)
        else:
            digests = self.page_digests
        items: list[M] = []
        for page, kind, digest in zip(self.pages, self.kinds, digests, strict=True):
            parsed = last.get(digest) if last is not None and digest is not None else None
            if parsed is None:
                parsed = parse_page(
                    self.model, _page_items(page, self.key, self.path, kind), page, self.path
                )
            if keep is not None and digest is not None:
                keep[digest] = parsed
            items += parsed
        return items


def next_link(header: str | None) -> str | None:
    """The ``rel="next"`` URL of a Link header, if any."""
    for url, rel in _LINK.findall(header or ""):
        if rel.lower() == "next":
            return str(url)
    return None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` with the scheme's default port filled in; host lower-cased."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: an origin nothing equals
        return (scheme, parts.netloc.lower(), -1)
    return (scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme))


def _origin_text(url: str) -> str:
    scheme, host, port = origin(url)
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + (f":{port}" if port not in (None, -1) else "")


def validate_base_url(base_url: str) -> str:
    """``https://canvas.example.edu`` (a trailing slash is fine); ValueError saying what is wrong
    otherwise. The config (``canvas_url``) and the CLI (``--url``) check with this, naming
    their key; the client checks again, as a contract."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{base_url!r} is not an http(s) URL of a Canvas instance")
    if parts.query or parts.fragment:
        raise ValueError("the Canvas URL must not have a query string or fragment")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _slots(pairs: Iterable[tuple[datetime | str, datetime | str]]) -> list[tuple[str, str]]:
    out = []
    for index, (start, end) in enumerate(pairs):
        for value in (start, end):
            text = value.isoformat() if isinstance(value, datetime) else value
            out.append((f"appointment_group[new_appointments][{index}][]", text))
    return out


class CanvasClient:
    """An async Canvas client for one token. Use as ``async with CanvasClient(...) as c``.

    ``token`` is a personal access token, or an ``httpx.Auth`` that signs each request itself
    (:class:`~bridge.canvas.token_auth.RefreshingAuth` for a person connected with OAuth2)."""

    def __init__(
        self,
        base_url: str,
        token: str | httpx.Auth,
        *,
        limits: CanvasLimits,
        timeout: float = 30.0,
        max_concurrency: int = 4,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        on_response: Callable[[ResponseInfo], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
        fast: FastGets | None = None,
    ) -> None:
        headers = {"Accept": "application/json"}
        auth: httpx.Auth | None = None
        if isinstance(token, httpx.Auth):
            auth = token  # e.g. RefreshingAuth: an OAuth-connected person's tokens
        elif not token or not token.strip():  # config and CLI refuse an empty token first
            raise ValueError("the Canvas token is empty")
        else:
            headers["Authorization"] = f"Bearer {token.strip()}"
        self.base_url = validate_base_url(base_url)
        # ``http``: a client shared with other accounts of this origin (a CanvasPool's); it
        # holds no credentials, so the token (or ``auth``) goes with each request and this
        # client's closing leaves it open. Without one, the client makes (and closes) its own.
        self._owned = http is None
        self._http = http or httpx.AsyncClient(
            timeout=timeout, transport=transport, follow_redirects=False
        )
        # GETs with a plain token go through aiohttp (fast_get.py): the shared client's
        # companion from the pool, or one of this client's own (not with a test transport).
        self._owned_fast: FastGets | None = None
        if fast is None and http is None and transport is None and auth is None:
            fast = self._owned_fast = own_fast_gets(self.base_url, timeout, max_concurrency)
        self._transport = Transport(
            self._http,
            base_url=self.base_url,
            headers=headers,
            auth=auth,
            policy=RetryPolicy(max_retries, backoff_base, backoff_cap),
            max_concurrency=max_concurrency,
            limits=limits,
            on_response=on_response,
            fast=fast,
        )

    def __repr__(self) -> str:
        return f"CanvasClient({self.base_url!r})"

    @property
    def limits(self) -> CanvasLimits:
        return self._transport.limits

    @property
    def requests_made(self) -> int:
        """HTTP requests sent so far (retries included)."""
        return self._transport.requests

    async def __aenter__(self) -> CanvasClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()
        if self._owned_fast is not None:
            await self._owned_fast.aclose()

    # --- plumbing ---------------------------------------------------------------------------

    def _parse(self, model: type[M], data: Any, method: str, path: str) -> M:
        return parse_one(model, data, method, path)

    async def _json(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        data: Any = None,
        idempotent: bool = True,
    ) -> Any:
        response = await self._transport.request(
            method, path, params=params, data=data, idempotent=idempotent
        )
        return decode_json(method, path, response)

    async def _one(self, model: type[M], method: str, path: str, **kw: Any) -> M:
        return self._parse(model, await self._json(method, path, **kw), method, path)

    async def _list(
        self,
        model: type[M],
        path: str,
        params: Sequence[tuple[str, Any]] = (),
        *,
        key: str | None = None,
    ) -> list[M]:
        """Every page of a list endpoint. ``key`` unwraps ``{"conferences": [...]}``."""
        return (await self._pages(model, path, params, key=key)).parse()

    async def _pages(
        self,
        model: type[M],
        path: str,
        params: Sequence[tuple[str, Any]] = (),
        *,
        key: str | None = None,
    ) -> RawList[M]:
        """Every page of a list endpoint as Canvas sent it, not yet validated: a page is
        decoded here only when a ``next`` link follows it (an empty page ends the list)."""
        pages: list[bytes] = []
        kinds: list[str] = []
        url: str | None = path
        query: list[tuple[str, Any]] | None = [*params, ("per_page", PER_PAGE)]
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            assert url is not None
            response = await self._transport.request("GET", url, params=query)
            pages.append(response.content)
            kinds.append(response.headers.get("content-type", "unknown content type").split(";")[0])
            url = next_link(response.headers.get("link"))
            if url is None or url in seen or not _page_items(pages[-1], key, path, kinds[-1]):
                return RawList(model, path, key, tuple(pages), tuple(kinds))
            seen.add(url)
            url = self._same_origin(urljoin(self.base_url + "/", url), path)
            query = None  # the next URL carries every parameter
        raise errors.CanvasBadResponse(
            f"more than {MAX_PAGES} pages; stopping", method="GET", path=path
        )

    def _same_origin(self, url: str, path: str) -> str:
        """``url`` if it lies on the account's Canvas; CanvasForeignLink otherwise."""
        if origin(url) != origin(self.base_url):
            raise errors.CanvasForeignLink(
                _origin_text(url), _origin_text(self.base_url), method="GET", path=path
            )
        return url

    # --- users ------------------------------------------------------------------------------

    async def me(self) -> Profile:
        """``GET /api/v1/users/self``: who the token belongs to."""
        return await self._one(Profile, "GET", "/api/v1/users/self")

    # --- conferences ------------------------------------------------------------------------

    async def conferences(self, live: bool = False) -> list[Conference]:
        """Conferences of all the user's courses and groups (bookmark pages)."""
        return (await self.conference_pages(live)).parse()

    async def course_conferences(self, course_id: int) -> list[Conference]:
        return (await self.course_conference_pages(course_id)).parse()

    async def group_conferences(self, group_id: int) -> list[Conference]:
        return (await self.group_conference_pages(group_id)).parse()

    async def conference_pages(self, live: bool = False) -> RawList[Conference]:
        """:meth:`conferences`, its pages not yet validated."""
        params = [("state", "live")] if live else []
        return await self._pages(Conference, "/api/v1/conferences", params, key="conferences")

    async def course_conference_pages(self, course_id: int) -> RawList[Conference]:
        path = f"/api/v1/courses/{int(course_id)}/conferences"
        return await self._pages(Conference, path, key="conferences")

    async def group_conference_pages(self, group_id: int) -> RawList[Conference]:
        path = f"/api/v1/groups/{int(group_id)}/conferences"
        return await self._pages(Conference, path, key="conferences")

    # --- appointment groups -----------------------------------------------------------------

    async def appointment_groups(
        self,
        scope: str = "reservable",
        include: Sequence[str] = (),
        context_codes: Sequence[str] = (),
        include_past_appointments: bool = False,
    ) -> list[AppointmentGroup]:
        pages = await self.appointment_group_pages(
            scope, include, context_codes, include_past_appointments
        )
        return pages.parse()

    async def appointment_group_pages(
        self,
        scope: str = "reservable",
        include: Sequence[str] = (),
        context_codes: Sequence[str] = (),
        include_past_appointments: bool = False,
    ) -> RawList[AppointmentGroup]:
        """:meth:`appointment_groups`, its pages not yet validated."""
        if scope not in ("reservable", "manageable"):
            raise errors.UserError(f"scope must be reservable or manageable, not {scope!r}")
        params: list[tuple[str, Any]] = [("scope", scope)]
        params += [("include[]", i) for i in include]
        params += [("context_codes[]", c) for c in context_codes]
        if include_past_appointments:
            params.append(("include_past_appointments", "true"))
        return await self._pages(AppointmentGroup, "/api/v1/appointment_groups", params)

    async def appointment_group(
        self, group_id: int, include: Sequence[str] = ()
    ) -> AppointmentGroup:
        params = [("include[]", i) for i in include]
        return await self._one(
            AppointmentGroup, "GET", f"/api/v1/appointment_groups/{int(group_id)}", params=params
        )

    def _group_form(self, fields: dict[str, Any]) -> list[tuple[str, str]]:
        form: list[tuple[str, str]] = []
        for name in (
            "title",
            "description",
            "location_name",
            "location_address",
            "participant_visibility",
            "participants_per_appointment",
            "min_appointments_per_participant",
            "max_appointments_per_participant",
        ):
            value = fields.get(name)
            if value is not None:
                form.append((f"appointment_group[{name}]", str(value)))
        for code in fields.get("context_codes") or ():
            form.append(("appointment_group[context_codes][]", code))
        for code in fields.get("sub_context_codes") or ():
            form.append(("appointment_group[sub_context_codes][]", code))
        if fields.get("publish"):
            form.append(("appointment_group[publish]", "1"))
        form += _slots(fields.get("new_appointments") or ())
        return form

    async def create_appointment_group(
        self, context_codes: Sequence[str], title: str, **fields: Any
    ) -> AppointmentGroup:
        """``POST /api/v1/appointment_groups`` (201). Pending unless ``publish=True``."""
        form = self._group_form({"context_codes": context_codes, "title": title, **fields})
        return await self._one(
            AppointmentGroup, "POST", "/api/v1/appointment_groups", data=form, idempotent=False
        )

    async def update_appointment_group(self, group_id: int, **fields: Any) -> AppointmentGroup:
        form = self._group_form(fields)
        path = f"/api/v1/appointment_groups/{int(group_id)}"
        return await self._one(AppointmentGroup, "PUT", path, data=form, idempotent=False)

    async def delete_appointment_group(
        self, group_id: int, cancel_reason: str | None = None
    ) -> AppointmentGroup:
        data = {"cancel_reason": cancel_reason} if cancel_reason else None
        path = f"/api/v1/appointment_groups/{int(group_id)}"
        return await self._one(AppointmentGroup, "DELETE", path, data=data, idempotent=False)

    async def appointment_group_users(
        self, group_id: int, registration_status: str = "all"
    ) -> list[User]:
        path = f"/api/v1/appointment_groups/{int(group_id)}/users"
        return await self._list(User, path, [("registration_status", registration_status)])

    async def appointment_group_groups(
        self, group_id: int, registration_status: str = "all"
    ) -> list[Group]:
        path = f"/api/v1/appointment_groups/{int(group_id)}/groups"
        return await self._list(Group, path, [("registration_status", registration_status)])

    async def next_appointment(
        self, appointment_group_ids: Sequence[int] = ()
    ) -> CalendarEvent | None:
        params = [("appointment_group_ids[]", str(i)) for i in appointment_group_ids]
        path = "/api/v1/appointment_groups/next_appointment"
        data = await self._json("GET", path, params=params)
        if not isinstance(data, list):
            raise errors.CanvasBadResponse(
                "expected a list of 0 or 1 events", method="GET", path=path
            )
        return self._parse(CalendarEvent, data[0], "GET", path) if data else None

    # --- calendar events: slots and reservations --------------------------------------------

    async def calendar_event(self, event_id: int) -> CalendarEvent:
        return await self._one(CalendarEvent, "GET", f"/api/v1/calendar_events/{int(event_id)}")

    async def reserve(
        self,
        slot_id: int,
        *,
        participant_id: int | None = None,
        comments: str | None = None,
        cancel_existing: bool = False,
    ) -> CalendarEvent:
        """Reserve a slot; ``cancel_existing`` swaps atomically. Never retried after sending."""
        path = f"/api/v1/calendar_events/{int(slot_id)}/reservations"
        if participant_id is not None:
            path += f"/{int(participant_id)}"
        form = []
        if comments:
            form.append(("comments", comments))
        if cancel_existing:
            form.append(("cancel_existing", "true"))
        return await self._one(CalendarEvent, "POST", path, data=form, idempotent=False)

    async def cancel_reservation(
        self, reservation_id: int, cancel_reason: str | None = None
    ) -> CalendarEvent:
        """``DELETE /api/v1/calendar_events/:id`` on a reservation. Never retried after sending."""
        data = {"cancel_reason": cancel_reason} if cancel_reason else None
        path = f"/api/v1/calendar_events/{int(reservation_id)}"
        return await self._one(CalendarEvent, "DELETE", path, data=data, idempotent=False)
