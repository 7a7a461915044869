"""The poll successes of many accounts, written together.

Every account's cycle ends by recording when it last polled successfully. Once an unchanged
account costs no parse and no render, that one UPDATE (its own transaction, its own fsync on
SQLite) is most of what is left of its database cost. :class:`StatusBatch` keeps the
successes in memory and writes them in one transaction at most ``max_delay`` seconds after
the first one waiting, or as soon as ``max_size`` wait.

Crash consistency: only ``last_success_at`` (and its reset failure count) waits here. A crash
loses at most that timestamp for the accounts waiting — never a snapshot, feed, version,
journal or write-back record, which keep their own transactions. An account's waiting
success is written first whenever anything else is about to write its status (a failure, a
changed poll), so the status rows see the cycles in the order they happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime

log = logging.getLogger("bridge.daemon")


class StatusBatch:
    def __init__(
        self,
        write: Callable[[Mapping[str, datetime]], None],
        *,
        max_size: int = 500,
        max_delay: float = 1.0,
    ) -> None:
        self._write = write
        self.max_size, self.max_delay = max_size, max_delay
        self._waiting: dict[str, datetime] = {}
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.writes = 0  # transactions written so far (tests and benchmarks count them)

    def waiting(self, account_id: str) -> bool:
        return account_id in self._waiting

    async def add(self, account_id: str, at: datetime) -> None:
        """Record ``account_id``'s successful poll at ``at`` (written within ``max_delay``)."""
        self._bind()
        self._waiting[account_id] = at
        if len(self._waiting) >= self.max_size:
            await self.flush()
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._later())

    async def before_write(self, account_id: str) -> None:
        """Something else is about to write this account's status: write its waiting one first."""
        if account_id in self._waiting:
            await self.flush()

    def _bind(self) -> None:
        """A timer and a lock belong to one event loop: a new loop (``asyncio.run`` again)
        gets its own; what was waiting is written from the new one."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._lock, self._timer = loop, asyncio.Lock(), None

    async def _later(self) -> None:
        await asyncio.sleep(self.max_delay)
        try:
            await self.flush()
        except Exception:  # kept for the next flush; the cycle goes on
            log.exception("writing the accounts' poll times failed; trying again later")

    async def flush(self) -> None:
        """Write everything waiting, in one transaction. On failure what was waiting stays
        waiting (unless a newer success replaced it) and the error propagates."""
        self._bind()
        async with self._lock:
            waiting, self._waiting = self._waiting, {}
            if not waiting:
                return
            try:
                await asyncio.to_thread(self._write, waiting)
            except BaseException:
                for account_id, at in waiting.items():
                    self._waiting.setdefault(account_id, at)
                raise
            self.writes += 1

    async def aclose(self) -> None:
        """Write what is waiting and stop the timer."""
        self._bind()
        timer, self._timer = self._timer, None
        if timer is not None and not timer.done():
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        await self.flush()
