"""What a person's feed serves, waited for: its body once it has events, and the kinds of
events it holds (conference, reservation, open_slot, managed_slot)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from icalendar import Calendar


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
