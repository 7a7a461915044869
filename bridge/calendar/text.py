"""Text for calendars: HTML descriptions to readable plain text, and iCalendar escaping/folding.

Canvas descriptions are HTML written by people (and sometimes hostile). Calendar apps mostly
show DESCRIPTION as plain text, so the HTML becomes text with paragraphs, line breaks, list
bullets and link targets kept; scripts and styles are dropped; entities are decoded.
"""

from __future__ import annotations

import html
import logging
import re
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import urlsplit

log = logging.getLogger("bridge.calendar")

_BLOCK = {
    "p",
    "div",
    "br",
    "li",
    "tr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "table",
    "blockquote",
    "pre",
    "hr",
}
_SKIP = {"script", "style", "head", "title", "template", "iframe", "object"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._href: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag in _BLOCK:
            self.parts.append("\n")
            if tag == "li":
                self.parts.append("• ")
        if tag == "a":
            self._href.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP and self._skip:
            self._skip -= 1
        elif tag in ("p", "div", "ul", "ol", "table", "blockquote", "pre", "h1", "h2", "h3"):
            self.parts.append("\n")
        if tag == "a" and self._href:
            href = self._href.pop()
            if (
                href
                and href.startswith(("http://", "https://", "mailto:"))
                and href not in self.parts[-1:]
            ):
                self.parts.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(re.sub(r"\s+", " ", data))


@lru_cache(maxsize=8192)
def html_to_text(value: str | None) -> str:
    """Readable plain text from Canvas HTML; plain text passes through (entities decoded).

    Cached: the same descriptions come back on every poll, and parsing HTML is the most
    expensive step of a re-render."""
    if not value:
        return ""
    if "<" not in value:
        return clean(html.unescape(value))
    parser = _TextExtractor()
    try:
        parser.feed(value)
        parser.close()
    except Exception:  # a parser error on hostile input must not lose the text
        return clean(re.sub(r"<[^>]*>", " ", html.unescape(value)))
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.split("\n")]
    return clean(re.sub(r"\n{3,}", "\n\n", "\n".join(lines)))


def clean(text: str) -> str:
    """Strip control characters iCalendar TEXT cannot hold (tabs and newlines stay)."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def escape(text: str) -> str:
    """RFC 5545 §3.3.11 TEXT escaping."""
    return (
        clean(text)
        .replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\n", "\\n")
    )


def fold(line: str) -> str:
    """RFC 5545 §3.1: lines of at most 75 octets.

    A fold never splits a UTF-8 character nor a TEXT escape: a backslash stays on the line of
    the character it escapes. Google Calendar drops an event whose fold falls between ``\\``
    and ``n`` (icalendar issue #1501), although unfolding would restore it."""
    raw = line.encode()
    if len(raw) <= 75:
        return line + "\r\n"
    out: list[str] = []
    start, limit = 0, 75
    while start < len(raw):
        end = min(start + limit, len(raw))
        while end < len(raw) and (raw[end] & 0xC0) == 0x80:  # don't split a character
            end -= 1
        if end < len(raw):
            run = 0  # backslashes right before the fold; an odd run opens an escape
            while end - 1 - run >= 0 and raw[end - 1 - run] == 0x5C:
                run += 1
            end -= run % 2
        out.append(raw[start:end].decode())
        start, limit = end, 74  # continuation lines start with a space
    return "\r\n ".join(out) + "\r\n"


_URI_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def safe_uri(value: str | None) -> str | None:
    """``value`` if it may be written raw as a URI property (URL, CONFERENCE): an absolute
    http(s) URL with a host and no control characters or spaces. Such values are not escaped
    (RFC 5545 §3.3.13), so CR/LF in one would end the property — and could end the event."""
    if not value or _URI_CONTROL.search(value):
        return None
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return value


_reported: set[tuple[str, str]] = set()


def checked_uri(value: str | None, ref: str, prop: str) -> str | None:
    """:func:`safe_uri`, logging (once per event and property, never the value, which may
    carry a meeting passcode) when a link is left out."""
    safe = safe_uri(value)
    if value and safe is None and (ref, prop) not in _reported:
        if len(_reported) > 10_000:
            _reported.clear()
        _reported.add((ref, prop))
        log.warning(
            "event %s: %s left out: not an http(s) URL free of control characters and spaces",
            ref,
            prop,
        )
    return safe
