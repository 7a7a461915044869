"""A feed as rendered for serving: one record, saved by the state store (so a restart serves
it at once) and served by the web listener.

Every feed is held gzipped (Google, Outlook and Apple ask for gzip); the plain body is kept as
well only from :data:`PLAIN_KEPT_FROM` bytes. A small feed's plain body is decompressed for
the rare client that does not accept gzip (~14 µs for 5 KiB), which keeps ~3.1 of its 3.7 KiB
out of memory: a tenth of what each of 10,000 accounts costs the daemon. A large feed's
decompression would cost a millisecond per request, so it keeps both.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass, field
from datetime import datetime

PLAIN_KEPT_FROM = 64 * 1024  # bytes of ICS from which the plain body is kept beside the gzip


@dataclass(frozen=True)
class PublishedFeed:
    """One rendered feed: its ICS body with the validators HTTP needs (``etag`` from the body,
    ``last_modified`` to the second) and the body gzipped once. Make one with :meth:`build`;
    ``plain`` is the body as kept (empty under :data:`PLAIN_KEPT_FROM` bytes), ``body`` the
    body always."""

    feed_id: str
    name: str
    plain: bytes = field(repr=False)
    etag: str
    last_modified: datetime
    refreshed_at: datetime
    event_count: int
    includes: tuple[str, ...] = ()
    description: str = ""
    gzip_body: bytes = field(default=b"", repr=False)

    @classmethod
    def build(
        cls,
        feed_id: str,
        name: str,
        body: bytes,
        *,
        refreshed_at: datetime,
        last_modified: datetime,
        event_count: int,
        includes: tuple[str, ...] = (),
        description: str = "",
    ) -> PublishedFeed:
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        # mtime=0 keeps the compressed bytes (and so their ETag) identical for identical input
        return cls(
            feed_id,
            name,
            body if len(body) >= PLAIN_KEPT_FROM else b"",
            etag,
            last_modified.replace(microsecond=0),
            refreshed_at,
            event_count,
            includes,
            description,
            gzip.compress(body, compresslevel=6, mtime=0),
        )

    @property
    def body(self) -> bytes:
        """The ICS bytes (decompressed from ``gzip_body`` when the plain body is not kept)."""
        # zlib with the gzip header: a quarter of gzip.decompress's time (14 against 51 µs for
        # a 5 KiB feed on the loaded 2-core machine)
        if self.plain or not self.gzip_body:
            return self.plain
        return zlib.decompress(self.gzip_body, 16 + zlib.MAX_WBITS)
