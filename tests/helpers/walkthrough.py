"""Institution mode's pages as a person goes through them (the contract in the pages' brief):
a small HTML reader for the elements the pages promise, signing in with httpx the way a
browser without JavaScript does, and what a served feed holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx
from icalendar import Calendar

from tests.helpers.oauth_flow import browser_answer


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))


def elements(html: str, tag: str, **wanted: str) -> list[dict[str, str]]:
    """The attributes of every ``tag`` whose attributes include ``wanted``; ``class_`` matches
    one of the element's classes."""
    reader = _Elements()
    reader.feed(html)
    out = []
    for name, attrs in reader.found:
        if name != tag:
            continue
        ok = True
        for key, value in wanted.items():
            if key == "class_":
                ok = ok and value in attrs.get("class", "").split()
            else:
                ok = ok and attrs.get(key) == value
        if ok:
            out.append(attrs)
    return out


def one(html: str, tag: str, **wanted: str) -> dict[str, str]:
    found = elements(html, tag, **wanted)
    assert len(found) == 1, f"expected one <{tag} {wanted}>, found {len(found)} in:\n{html}"
    return found[0]


def connect(client: httpx.Client, home: str, user: str) -> httpx.Response:
    """Home page → Connect with Canvas → the simulator's authorize page (``user``, Authorize)
    → the callback → the person's page; the answer of ``/me``."""
    page = client.get(home)
    assert page.status_code == 200, page.text
    start = client.get(urljoin(home, one(page.text, "a", id="connect")["href"]))
    assert start.status_code == 302, start.text
    assert "/login/oauth2/auth?" in start.headers["location"]
    back = browser_answer(start.headers["location"], user=user)
    assert back.startswith(urljoin(home, "/oauth/callback?")), back
    landed = client.get(back)
    assert landed.status_code == 303, landed.text
    assert urljoin(home, landed.headers["location"]) == urljoin(home, "/me")
    me = client.get(urljoin(home, "/me"))
    assert me.status_code == 200, me.text
    return me


def kinds(ics: str) -> dict[str, int]:
    """How many events of each kind (conference, reservation, open_slot, managed_slot)."""
    out: dict[str, int] = {}
    for event in Calendar.from_ical(ics).walk("VEVENT"):
        kind = str(event.get("X-CALBRIDGE-KIND", "?"))
        out[kind] = out.get(kind, 0) + 1
    return out


def eventually(check: Callable[[], object], what: str, timeout: float = 30) -> object:
    """``check()``'s first true value, retried until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def served_feed(url: str, timeout: float = 30) -> str:
    """The feed's body once it serves events."""

    def ready() -> str | None:
        r = httpx.get(url)
        return r.text if r.status_code == 200 and "BEGIN:VEVENT" in r.text else None

    return str(eventually(ready, f"{url} to serve events", timeout))
