"""Feed secrets and the URLs people paste into their calendar apps.

A feed URL is ``<public_url>/feeds/<feed id>/<secret>.ics``; the secret has 192 random bits.
Google refuses URLs over 256 characters, so a URL that would be longer is an error naming
``http.public_url``. Deep links: Google's ``/calendar/r?cid=<webcal URL>`` (it refuses https
there), Outlook's ``addfromweb`` (needs https), Apple's ``webcal://``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from bridge.errors import ConfigError

GOOGLE_URL_LIMIT = 256


def new_feed_secret() -> str:
    """192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class FeedUrls:
    https: str
    webcal: str
    google: str
    outlook_live: str
    outlook_office: str
    page: str


def feed_path(feed_id: str, secret: str) -> str:
    return f"/feeds/{quote(feed_id, safe='')}/{secret}.ics"


def feed_urls(public_url: str, feed_id: str, secret: str, name: str = "Canvas") -> FeedUrls:
    base = public_url.rstrip("/")
    https = base + feed_path(feed_id, secret)
    if len(https) > GOOGLE_URL_LIMIT:
        raise ConfigError(
            f"feed URLs would be {len(https)} characters; Google Calendar refuses more than {GOOGLE_URL_LIMIT} "
            "(shorten the public URL or the feed id)",
            key="http.public_url",
        )
    parts = urlsplit(https)
    webcal = "webcal://" + parts.netloc + parts.path
    return FeedUrls(
        https=https,
        webcal=webcal,
        google="https://calendar.google.com/calendar/r?cid=" + quote(webcal, safe=""),
        outlook_live=f"https://outlook.live.com/calendar/0/addfromweb?url={quote(https, safe='')}&name={quote(name, safe='')}",
        outlook_office=f"https://outlook.office.com/calendar/0/addfromweb?url={quote(https, safe='')}&name={quote(name, safe='')}",
        page=https.removesuffix(".ics"),
    )
