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

log = logging.getLogger("bridge.mapping")

_BLOCK = {"p", "div", "br", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "hr"}
_CLOSE = {"p", "div", "table", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6"}
_SKIP = {"script", "style", "head", "title", "template", "iframe", "object"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_KEEP = "\x01"  # marks a line whose leading whitespace is meant (list indent, <pre>)


class _TextExtractor(HTMLParser):
    """Text with the structure a reader needs: paragraphs, ``A | B`` table cells, bulleted
    (``•``) and numbered (``1.``) list items indented by nesting, ``<pre>`` kept verbatim, and
    link targets after their text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._pre = 0
        self._href: list[str | None] = []
        self._lists: list[list[int]] = []  # per open list: [ordered?, items so far]
        self._cells = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag in _BLOCK:
            self.parts.append("\n")
        elif tag in ("ul", "ol"):
            if not self._lists:
                self.parts.append("\n")
            self._lists.append([tag == "ol", 0])
        elif tag == "li":
            ordered, count = self._lists[-1] if self._lists else (False, 0)
            if self._lists:
                self._lists[-1][1] = count + 1
            indent = "  " * max(len(self._lists) - 1, 0)
            self.parts.append(f"\n{_KEEP}{indent}" + (f"{count + 1}. " if ordered else "• "))
        elif tag == "tr":
            self.parts.append("\n")
            self._cells = 0
        elif tag in ("td", "th"):
            if self._cells:
                self.parts.append(" | ")
            self._cells += 1
        elif tag == "pre":
            self._pre += 1
            self.parts.append(f"\n{_KEEP}")
        if tag == "a":
            self._href.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP and self._skip:
            self._skip -= 1
        elif tag in _CLOSE:
            self.parts.append("\n")
        elif tag in ("ul", "ol") and self._lists:
            self._lists.pop()
            if not self._lists:
                self.parts.append("\n")
        elif tag == "pre" and self._pre:
            self._pre -= 1
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
        if self._skip:
            return
        data = data.replace(_KEEP, "")
        if self._pre:
            self.parts.append(data.replace("\r\n", "\n").replace("\n", f"\n{_KEEP}"))
        else:
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
    lines = [
        line[1:].rstrip() if line.startswith(_KEEP) else line.strip()
        for line in "".join(parser.parts).split("\n")
    ]
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
