"""A feed as rendered for serving: one record, saved by the state store (so a restart serves
it at once) and served by the web listener."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class PublishedFeed:
    """One rendered feed: its ICS body with the validators HTTP needs (``etag`` from the body,
    ``last_modified`` to the second) and the body gzipped once. Make one with :meth:`build`."""

    feed_id: str
    name: str
    body: bytes
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
            body,
            etag,
            last_modified.replace(microsecond=0),
            refreshed_at,
            event_count,
            includes,
            description,
            gzip.compress(body, compresslevel=6, mtime=0),
        )
