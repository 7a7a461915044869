"""Feed secrets and the URLs people paste into their calendar apps.

A feed URL is ``<public_url>/feeds/<feed id>/<secret>.ics``; the secret has 192 random bits.
Google refuses URLs over 256 characters: the config checks ``http.public_url`` against every
feed id with :func:`url_too_long`, so a URL that would be longer never reaches a calendar. Deep links: Google's ``/calendar/r?cid=<webcal URL>`` (it refuses https
there), Outlook's ``addfromweb`` (needs https), Apple's ``webcal://``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

GOOGLE_URL_LIMIT = 256


def new_feed_secret() -> str:
    """192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


SECRET_CHARS = len(new_feed_secret())


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


def url_too_long(public_url: str, feed_id: str, secret_chars: int = SECRET_CHARS) -> str | None:
    """Why Google Calendar would refuse this feed's URL; None when it would not."""
    length = len(public_url.rstrip("/") + feed_path(feed_id, "x" * secret_chars))
    if length <= GOOGLE_URL_LIMIT:
        return None
    return (
        f"feed URLs would be {length} characters; Google Calendar refuses more than "
        f"{GOOGLE_URL_LIMIT} (shorten the public URL or the feed id)"
    )


def feed_urls(public_url: str, feed_id: str, secret: str, name: str = "Canvas") -> FeedUrls:
    base = public_url.rstrip("/")
    https = base + feed_path(feed_id, secret)
    too_long = url_too_long(public_url, feed_id, len(secret))
    if too_long:  # the config refused such a public_url already; this is the contract
        raise ValueError(too_long)
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
