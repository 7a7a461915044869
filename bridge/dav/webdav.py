"""The hot path of CalDAV over httpx: list, sync-collection, multiget, PUT/DELETE with
preconditions. Discovery and calendar creation use the ``caldav`` library (discovery.py); the
per-event traffic is done here because it needs exact control of If-Match / If-None-Match,
412 handling, ETags from responses, concurrency and request counting.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from bridge.dav import boundary
from bridge.errors import CalDAVError, CalDAVUnavailable

NS = {"d": "DAV:", "c": "urn:ietf:params:xml:ns:caldav"}
RETRY_STATUS = {500, 502, 503, 504}
# No answer of a calendar server needs more (a multiget batch of 200 events is well under 1 MB);
# a server sending more gets a clear error instead of the daemon's memory.
MAX_RESPONSE_BYTES = 32 << 20

# 423 Locked: Xandikos answers it to concurrent writes into one collection (its git index is
# locked by the other write). Nothing was written: the request is sent again, and from then on
# this client sends one request at a time.
LOCKED, LOCKED_RETRIES = 423, 10

SYNC_BODY = """<?xml version="1.0" encoding="utf-8"?>
<d:sync-collection xmlns:d="DAV:"><d:sync-token>{token}</d:sync-token><d:sync-level>1</d:sync-level>
<d:prop><d:getetag/></d:prop></d:sync-collection>"""
PROPFIND_BODY = """<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/><d:resourcetype/></d:prop></d:propfind>"""
MULTIGET_HEAD = """<?xml version="1.0" encoding="utf-8"?>
<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">
<d:prop><d:getetag/><c:calendar-data/></d:prop>"""


@dataclass(frozen=True)
class Listing:
    """hrefs with ETags; for a sync-collection delta, ``removed`` and ``complete`` = False."""

    etags: dict[str, str | None]
    removed: set[str]
    token: str | None
    complete: bool


class SyncTokenInvalid(Exception):
    """The server refused our sync token (or sync-collection altogether): list everything."""


class Dav:
    def __init__(
        self,
        collection: str,
        auth: httpx.Auth,
        *,
        target: str,
        timeout: float,
        max_parallel: int,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.collection = collection if collection.endswith("/") else collection + "/"
        self.target = target
        self.requests = 0
        self._limit = asyncio.Semaphore(max_parallel)
        self._one_at_a_time = asyncio.Lock()
        self._serial = False  # set after a 423: the server cannot take parallel writes
        self._retries = retries
        self._max_bytes = max_response_bytes
        self._http = httpx.AsyncClient(
            auth=auth,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=max_parallel),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def href_path(self, href: str) -> str:
        return unquote(urlsplit(urljoin(self.collection, href)).path)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content: str | None = None,
    ) -> httpx.Response:
        attempt = locked = 0
        while attempt <= self._retries:
            try:
                async with self._limit, self._turn():
                    self.requests += 1
                    response = await self._send(
                        method, urljoin(self.collection, url), headers, content
                    )
            except httpx.TransportError as exc:
                if attempt >= self._retries:
                    raise CalDAVUnavailable(
                        f"{method} failed: {type(exc).__name__}", target=self.target
                    ) from None
            else:
                if response.status_code == boundary.UNAUTHORIZED:
                    raise boundary.auth_refused(self.target)
                if response.status_code == LOCKED and locked < LOCKED_RETRIES:
                    self._serial, locked = True, locked + 1
                    await asyncio.sleep(random.uniform(0.01, 0.05 * min(locked, 4)))
                    continue
                if response.status_code not in RETRY_STATUS or attempt >= self._retries:
                    return response
            await asyncio.sleep(random.uniform(0, 0.2 * 2**attempt))
            attempt += 1
        raise CalDAVUnavailable(f"{method} kept failing", target=self.target)

    async def _send(
        self, method: str, url: str, headers: dict[str, str] | None, content: str | None
    ) -> httpx.Response:
        """One request; the body is read (decoded) up to :data:`MAX_RESPONSE_BYTES`."""
        request = self._http.build_request(method, url, headers=headers, content=content)
        streamed = await self._http.send(request, stream=True)
        chunks, size = [], 0
        try:
            async for chunk in streamed.aiter_bytes():
                size += len(chunk)
                if size > self._max_bytes:
                    raise CalDAVError(
                        f"{method} answered more than {self._max_bytes >> 20} MB; refused",
                        target=self.target,
                    )
                chunks.append(chunk)
        finally:
            await streamed.aclose()
        headers_read = [
            (k, v)
            for k, v in streamed.headers.multi_items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            streamed.status_code, headers=headers_read, content=b"".join(chunks), request=request
        )

    def _turn(self) -> contextlib.AbstractAsyncContextManager[object]:
        return self._one_at_a_time if self._serial else contextlib.nullcontext()

    # --- reading ----------------------------------------------------------------------------

    def _multistatus(
        self, response: httpx.Response
    ) -> list[tuple[str, str, str | None, str | None]]:
        """(href, status, etag, calendar-data) per response element."""
        try:
            root = ET.fromstring(response.content)
        except ET.ParseError as exc:
            raise CalDAVError(f"unreadable multistatus: {exc}", target=self.target) from None
        if root.tag != "{DAV:}multistatus":
            raise CalDAVError(
                f"expected a DAV multistatus, got <{root.tag}>"[:200], target=self.target
            )
        out = []
        for resp in root.findall("d:response", NS):
            href = self.href_path((resp.findtext("d:href", "", NS) or "").strip())
            status = resp.findtext("d:status", "", NS) or ""
            etag = data = None
            for propstat in resp.findall("d:propstat", NS):
                if " 200" not in (propstat.findtext("d:status", "", NS) or ""):
                    continue
                etag = propstat.findtext("d:prop/d:getetag", None, NS) or etag
                data = propstat.findtext("d:prop/c:calendar-data", None, NS) or data
                status = status or "HTTP/1.1 200 OK"
            out.append((href, status, etag, data))
        return out

    async def _query(self, method: str, body: str, what: str) -> httpx.Response:
        """A Depth-1 query of the collection that must answer 207 Multi-Status."""
        headers = {"Depth": "1", "Content-Type": "application/xml"}
        response = await self.request(method, self.collection, headers=headers, content=body)
        if response.status_code != 207:
            raise CalDAVError(
                f"{what} answered {response.status_code}",
                target=self.target,
                status=response.status_code,
            )
        return response

    async def list_all(self) -> Listing:
        """PROPFIND Depth 1: every resource with its ETag (the fallback without sync tokens)."""
        response = await self._query("PROPFIND", PROPFIND_BODY, "PROPFIND")
        own = self.href_path(self.collection)
        etags = {
            h: e
            for h, _, e, _ in self._multistatus(response)
            if h.rstrip("/") != own.rstrip("/") and not h.endswith("/")
        }
        return Listing(etags, set(), None, True)

    async def sync(self, token: str | None) -> Listing:
        """RFC 6578 sync-collection; raises SyncTokenInvalid when unsupported or refused."""
        body = SYNC_BODY.format(token=token or "")
        response = await self.request(
            "REPORT",
            self.collection,
            headers={"Depth": "1", "Content-Type": "application/xml"},
            content=body,
        )
        if response.status_code != 207:
            raise SyncTokenInvalid(str(response.status_code))
        try:
            new_token = ET.fromstring(response.content).findtext("d:sync-token", None, NS)
        except ET.ParseError:
            raise SyncTokenInvalid("unreadable") from None
        etags: dict[str, str | None] = {}
        removed: set[str] = set()
        own = self.href_path(self.collection).rstrip("/")
        for href, status, etag, _ in self._multistatus(response):
            if href.rstrip("/") == own or href.endswith("/"):
                continue
            if " 404" in status:
                removed.add(href)
            else:
                etags[href] = etag
        return Listing(etags, removed, new_token, complete=not token)

    async def multiget(
        self, hrefs: list[str], batch: int = 200
    ) -> dict[str, tuple[str | None, str]]:
        """Bodies and ETags of ``hrefs`` (calendar-multiget, in batches)."""
        found: dict[str, tuple[str | None, str]] = {}
        for i in range(0, len(hrefs), batch):
            chunk = hrefs[i : i + batch]
            body = (
                MULTIGET_HEAD
                + "".join(f"<d:href>{_xml(h)}</d:href>" for h in chunk)
                + "</c:calendar-multiget>"
            )
            response = await self._query("REPORT", body, "calendar-multiget")
            for href, _, etag, data in self._multistatus(response):
                if data is not None:
                    found[href] = (etag, data)
        return found

    # --- writing ----------------------------------------------------------------------------

    async def put(
        self, href: str, ics: str, *, etag: str | None = None, create: bool = False
    ) -> str | None:
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if create:
            headers["If-None-Match"] = "*"
        elif etag:
            headers["If-Match"] = etag
        response = await self.request("PUT", href, headers=headers, content=ics)
        if response.status_code == boundary.PRECONDITION_FAILED:
            raise boundary.conflict(
                self.target,
                "PUT",
                href,
                expected=None if create else etag,
                current=response.headers.get("etag"),
            )
        if response.status_code not in (200, 201, 204):
            raise CalDAVError(
                f"PUT {href} answered {response.status_code}: {response.text[:200]}",
                target=self.target,
                status=response.status_code,
            )
        return response.headers.get("etag")

    async def delete(self, href: str, etag: str | None) -> None:
        headers = {"If-Match": etag} if etag else {}
        response = await self.request("DELETE", href, headers=headers)
        if response.status_code == boundary.PRECONDITION_FAILED:
            raise boundary.conflict(
                self.target, "DELETE", href, expected=etag, current=response.headers.get("etag")
            )
        if response.status_code not in (200, 204, 404):
            raise CalDAVError(
                f"DELETE {href} answered {response.status_code}",
                target=self.target,
                status=response.status_code,
            )


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
