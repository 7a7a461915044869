"""Whether an account's cycle can stop after the poll: the pure decision, no I/O.

An unchanged cycle used to parse every page, merge, render every feed, compare it with the
one served and write the account's status: ~10 ms of CPU per account for nothing. When
Canvas answers byte for byte as it did last time and nothing else its feeds are made of
has moved, the feeds are what they are: the cycle skips parsing, rendering and saving.

What a feed is made of, each compared with what the last full cycle of this process saw
(:class:`Rendered`): the bytes of every page polled (a digest), ``/users/self``, the account's
config and feeds' config (a SIGHUP or a person's change replaces them), each feed as served
(its ETag: another process may have published a newer one), and the clock — only up to
:func:`bridge.mapping.horizon.stable_until`. An account with CalDAV calendars is never
skipped (its cycle also looks for edits made in the calendars and resolves write-backs), and
neither is a dry run. Reservation aliases are not compared: only the write-back of an
account's CalDAV calendars sets them, and such accounts are never skipped.

The memory is this process's own (a restart does one full cycle per account).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Work(enum.StrEnum):
    """Why a cycle does its full work (or ``SKIP``: why not)."""

    SKIP = "nothing changed"
    FIRST = "no full cycle yet in this process"
    DRY_RUN = "a dry run"
    CALDAV = "it has CalDAV calendars"
    CANVAS = "Canvas answered differently"
    PROFILE = "its Canvas user changed"
    CONFIG = "its configuration changed"
    FEED = "a feed is not served as this process left it"
    CLOCK = "the clock passed a time that changes the feed"

    @property
    def skips(self) -> bool:
        return self is Work.SKIP


@dataclass(frozen=True)
class Inputs:
    """What an account's feeds are made of, as they stand for one cycle."""

    pages: str  # the digest of every page polled
    profile: object  # /users/self
    config: tuple[object, ...]  # the account's config and its feeds' configs
    etags: tuple[str | None, ...]  # each feed's ETag as served (None: not served)


@dataclass(frozen=True)
class Rendered:
    """What the last full cycle saw (``inputs``, the ETags as it left them) and until when
    its feeds hold with only the clock moving (None: for ever)."""

    inputs: Inputs
    stable_until: datetime | None


def decide(
    last: Rendered | None,
    now_inputs: Inputs,
    now: datetime,
    *,
    has_caldav: bool,
    dry_run: bool,
) -> Work:
    """Whether the cycle may stop after the poll (``Work.SKIP``) or why it may not."""
    if dry_run:
        return Work.DRY_RUN
    if has_caldav:
        return Work.CALDAV
    if last is None:
        return Work.FIRST
    before = last.inputs
    if before.pages != now_inputs.pages:
        return Work.CANVAS
    if before.profile != now_inputs.profile:
        return Work.PROFILE
    if before.config != now_inputs.config:
        return Work.CONFIG
    if before.etags != now_inputs.etags:
        return Work.FEED
    if last.stable_until is not None and now >= last.stable_until:
        return Work.CLOCK
    return Work.SKIP
