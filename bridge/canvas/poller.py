"""One poll of one Canvas account: everything the calendars need, in the fewest requests.

The minimum the API allows: the user's conferences (one request per 100), reservable
appointment groups with their slots and the user's reservations (one per 100), manageable
groups with slots and reservations (one per 100, at least 1) only when some output of the
account shows managed slots, and ``/users/self`` (1) only when the caller does not know the
user already (the daemon asks once per process start and then daily) — plus one request per
extra conference context asked for. Each list comes with its ``include[]`` so nothing is
fetched per group (no N+1). Independent lists run concurrently. A whole poll has a deadline
(the client's ``limits.poll_deadline``) beyond the per-request one, so retries against a slow
server cannot stretch a poll without end.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from bridge.canvas.client import PER_PAGE, CanvasClient, M, RawList
from bridge.errors import CanvasTimeout
from bridge.model.canvas import AccountSnapshot, AppointmentGroup, Conference, Profile

RESERVABLE_INCLUDE = ("appointments", "reserved_times", "participant_count")
MANAGEABLE_INCLUDE = ("appointments", "child_events", "participant_count")
MANAGED_KIND = "managed_slots"  # the only output kind built from manageable groups
# Lists of fewer pages are not kept by ParsedPages: when one of their pages changes there is
# nothing left to reuse, and when none does the whole poll usually skips (daemon/skip.py).
KEEP_FROM_PAGES = 2


def needs_managed(includes: Iterable[Iterable[str]]) -> bool:
    """Whether outputs with these ``include`` lists need the manageable groups polled."""
    return any(MANAGED_KIND in include for include in includes)


@dataclass(frozen=True)
class PollOptions:
    """What one poll asks for, built by ``AccountConfig.poll_options`` (which checks the codes)."""

    conference_contexts: tuple[str, ...]  # course_<id> / group_<id>: all their conferences
    include_managed: bool  # also the appointment groups the user manages


def _context(code: str) -> tuple[str, int]:
    kind, _, ident = code.partition("_")
    return kind, int(ident)


async def _conference_lists(
    client: CanvasClient, contexts: tuple[str, ...]
) -> list[RawList[Conference]]:
    lists = [client.conference_pages()]
    for code in contexts:
        kind, ident = _context(code)
        lists.append(
            client.course_conference_pages(ident)
            if kind == "course"
            else client.group_conference_pages(ident)
        )
    return list(await asyncio.gather(*lists))


class ParsedPages:
    """What one account's last validated poll parsed: for each list of at least
    ``min_pages`` pages, each page's SHA-256 → the (frozen) objects parsed from it.

    Given to :meth:`FetchedPoll.snapshot`, a page whose bytes did not change since is not
    parsed again: the snapshot holds the very objects of last time, so the render can tell an
    unchanged appointment group by identity (``bridge.mapping.feed.RenderCache``) without
    building its key. Only the last poll is kept (replaced by each validated one); a poll
    that fails to validate leaves it as it was. Lists are told apart by path only (the
    reservable and manageable groups share one): a page of the same bytes parses to equal
    objects whichever list it came from, so sharing them is as right as parsing again."""

    __slots__ = ("_lists", "min_pages")

    def __init__(self, min_pages: int = KEEP_FROM_PAGES) -> None:
        self.min_pages = min_pages
        self._lists: dict[str, dict[bytes, list[Any]]] = {}

    def __len__(self) -> int:
        """How many pages are kept."""
        return sum(map(len, self._lists.values()))

    def parse(self, raw: RawList[M], kept: dict[str, dict[bytes, list[Any]]]) -> list[M]:
        """``raw``'s items, reusing the last poll's objects of its unchanged pages; its pages
        go into ``kept`` if it is long enough."""
        keep = kept.setdefault(raw.path, {}) if len(raw.pages) >= self.min_pages else None
        return raw.parse(self._lists.get(raw.path), keep)

    def replace(self, kept: dict[str, dict[bytes, list[Any]]]) -> None:
        self._lists = kept


@dataclass(frozen=True)
class FetchedPoll:
    """What one poll fetched, before any list is validated: :attr:`digest` says whether
    Canvas answered exactly as before (then a caller may skip the rest); :meth:`snapshot`
    validates the lists (CanvasBadResponse if one does not hold what it should)."""

    user: Profile
    conferences: tuple[RawList[Conference], ...]
    reservable: RawList[AppointmentGroup]
    manageable: RawList[AppointmentGroup] | None

    @cached_property
    def digest(self) -> str:
        """A hash of every page's bytes, in order (not of the user: compared on its own)."""
        hashed = hashlib.sha256()
        for raw in (*self.conferences, self.reservable, self.manageable):
            if raw is None:
                hashed.update(b"-")
            else:
                raw.digest(hashed)
        return hashed.hexdigest()

    def snapshot(self, canvas_host: str, last: ParsedPages | None = None) -> AccountSnapshot:
        """The validated snapshot. ``last``: the account's last validated poll, whose objects
        the unchanged pages reuse; it is replaced by this poll's once every list validated."""
        kept: dict[str, dict[bytes, list[Any]]] = {}

        def parse(raw: RawList[M]) -> list[M]:
            return raw.parse() if last is None else last.parse(raw, kept)

        seen: dict[int, Conference] = {}
        for raw in self.conferences:
            for conf in parse(raw):
                seen.setdefault(conf.id, conf)
        snapshot = AccountSnapshot(
            canvas_host=canvas_host,
            user=self.user,
            conferences=sorted(seen.values(), key=lambda c: c.id),
            reservable=parse(self.reservable),
            manageable=parse(self.manageable) if self.manageable is not None else [],
            fetched_at=datetime.now(UTC),
        )
        if last is not None:
            last.replace(kept)
        return snapshot


async def fetch_account(
    client: CanvasClient, options: PollOptions, *, user: Profile | None = None
) -> FetchedPoll:
    """Fetch every list of one account's poll (not yet validated). Any Canvas error
    propagates: a partial poll is no poll.

    ``user``: the account's ``/users/self`` if the caller knows it (then not asked again)."""
    contexts, include_managed = options.conference_contexts, options.include_managed
    deadline = client.limits.poll_deadline

    async def me() -> Profile:
        return user if user is not None else await client.me()

    async def managed() -> RawList[AppointmentGroup] | None:
        if not include_managed:
            return None
        return await client.appointment_group_pages("manageable", include=MANAGEABLE_INCLUDE)

    try:
        async with asyncio.timeout(deadline):
            profile, conferences, reservable, manageable = await asyncio.gather(
                me(),
                _conference_lists(client, contexts),
                client.appointment_group_pages("reservable", include=RESERVABLE_INCLUDE),
                managed(),
            )
    except TimeoutError:
        raise CanvasTimeout(
            f"the poll did not finish within {deadline:g}s (poll_deadline); stopped it"
        ) from None
    return FetchedPoll(profile, tuple(conferences), reservable, manageable)


async def poll_account(
    client: CanvasClient,
    canvas_host: str,
    options: PollOptions,
    *,
    user: Profile | None = None,
) -> AccountSnapshot:
    """Poll everything for one account. Any Canvas error propagates: a partial poll is no poll.

    ``user``: the account's ``/users/self`` if the caller knows it (then not asked again)."""
    fetched = await fetch_account(client, options, user=user)
    return fetched.snapshot(canvas_host)


def minimum_requests(
    conferences: int,
    reservable_groups: int,
    manageable_groups: int = 0,
    *,
    contexts: int = 0,
    include_managed: bool = True,
    ask_user: bool = True,
) -> int:
    """The fewest requests :func:`poll_account` can make for these counts (``per_page=100``);
    ``ask_user=False`` when ``/users/self`` is already known."""

    def pages(n: int) -> int:
        return max(1, math.ceil(n / PER_PAGE))

    total = int(ask_user) + pages(conferences) + pages(reservable_groups) + contexts
    if include_managed:
        total += pages(manageable_groups)
    return total
