"""How one account's parts are built from its config: the Canvas client, the write-back
ledger, and each CalDAV calendar with the write-back it may do.

:mod:`bridge.daemon.cycle` tells the cycle; this module knows which constructor takes which
setting, registers every secret with the log redactor as it is read, and keeps what lives
longer than one cycle (a calendar's discovered collection and chosen authentication).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from bridge import metrics
from bridge.canvas.client import CanvasClient
from bridge.canvas.pool import CanvasPool
from bridge.canvas.transport import ResponseInfo
from bridge.canvas.writes import ClientWrites
from bridge.config import AccountConfig, CalDAVConfig, Settings, account_token, caldav_password
from bridge.daemon.logs import register_secret
from bridge.model.canvas import AccountSnapshot
from bridge.model.event import CalEvent
from bridge.state import StateStore
from bridge.state.journal import Limits
from bridge.sync.execute import Ledger
from bridge.sync.run import CalendarSync, Writeback

if TYPE_CHECKING:
    from bridge.daemon.people import People


def _count_response(info: ResponseInfo) -> None:
    metrics.CANVAS_REQUESTS.labels(str(info.status)).inc()
    if info.throttled:
        metrics.CANVAS_THROTTLED.inc()


class AccountWiring:
    """Builds the adapters of the accounts of one config, against one state store."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        state: StateStore,
        client_options: dict[str, Any] | None = None,
        people: People | None = None,
        *,
        pool: CanvasPool,
    ) -> None:
        # a callable: SIGHUP replaces the daemon's settings, and the next cycle reads the new ones
        self._settings = settings
        self.state = state
        self.client_options = client_options or {}
        self.people = people  # connected people: their tokens and passwords are in the state store
        self.pool = pool  # Canvas connections, one client per origin for all accounts
        self._calendars: dict[str, CalendarSync] = {}

    def person(self, key: str) -> People | None:
        """``self.people`` when ``key`` is a connected person's account or calendar."""
        if self.people is None or self.people.settings.oauth is None:
            return None
        from bridge.daemon.people import person_of

        return self.people if person_of(key) is not None else None

    def client(self, account: AccountConfig) -> CanvasClient:
        """A Canvas client with the token read now (a rotated token needs no restart), over
        the pool's shared connection to its Canvas; for a connected person, their stored tokens,
        refreshed (and stored again) when they expire."""
        people = self.person(account.id)
        token: str | httpx.Auth
        if people is not None:
            token = people.auth(account.id)
        else:
            token = account_token(account)
            register_secret(token)
        return CanvasClient(
            account.canvas_url,
            token,
            on_response=_count_response,
            limits=account.canvas_limits(),
            http=self.pool.http_for(account.canvas_url),
            fast=self.pool.fast_for(account.canvas_url),
            **self.client_options,
        )

    def ledger(self, account: AccountConfig) -> Ledger:
        """The write-back journal, safety stops and Canvas commands of one account."""
        wb = self._settings().writeback
        return Ledger(
            account.id,
            self.state.journal,
            self.state.stops,
            ClientWrites(lambda: self.client(account)),
            Limits(wb.max_per_minute, wb.max_per_day),
        )

    def calendar(self, target: CalDAVConfig) -> CalendarSync:
        """The target's calendar sync, kept between cycles (discovery happens once)."""
        calendar = self._calendars.get(target.id)
        if calendar is None:
            people = self.person(target.id)
            password = (
                people.target_password(target.id) if people is not None else caldav_password(target)
            )
            register_secret(password)
            calendar = self._calendars[target.id] = CalendarSync(target.target_settings(password))
        return calendar

    def writeback(
        self,
        account: AccountConfig,
        target: CalDAVConfig,
        snapshot: AccountSnapshot,
        events: dict[str, CalEvent],
    ) -> Writeback:
        """What the target's write-back may do this cycle, and with what."""
        policy = target.writeback_policy(self._settings().writeback)
        return Writeback(snapshot, events, policy, self.ledger(account))
