"""/healthz for the daemon: the scheduler and each account (and CalDAV target).

An account is *degraded* when its last poll failed or when it has not succeeded for three
poll intervals; the whole daemon is *failing* when no account has ever succeeded and the last
attempts failed, *starting* before the first cycle finished. It is *degraded* too while the
state database is locked or full (``state_error``, set by the daemon when a cycle hit it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bridge.config import Settings
from bridge.model.outcomes import StopKind, describe_stop
from bridge.state import StateStore
from bridge.web.health import HealthReport, Status

STALE_INTERVALS = 3


class DaemonHealth:
    def __init__(
        self,
        settings: Callable[[], Settings],
        state: StateStore,
        scheduler_running: Callable[[], bool],
        scheduler_problem: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._state = state
        self._scheduler_running = scheduler_running
        self._scheduler_problem = scheduler_problem  # why it is not running, when known
        self.targets: dict[str, dict[str, Any]] = {}
        self.state_error: str | None = None  # set while the state database is unusable

    def health(self) -> HealthReport:
        settings = self._settings()
        now = datetime.now(UTC)
        statuses = self._state.account_statuses()
        scheduler: dict[str, Any] = {"running": self._scheduler_running()}
        problem = self._scheduler_problem()
        if problem is not None:
            scheduler["error"] = problem
        components: dict[str, dict[str, Any]] = {"scheduler": scheduler}
        states: list[Status] = []
        for account in settings.accounts:
            status = statuses.get(account.id)
            if status is None:
                state: Status = "starting"
                info: dict[str, Any] = {}
            else:
                stale = (
                    status.last_success_at is None
                    or now - status.last_success_at > account.poll_interval * STALE_INTERVALS
                )
                failing = status.consecutive_failures > 0
                if status.last_success_at is None and failing:
                    state = "failing"
                elif failing or stale:
                    state = "degraded"
                else:
                    state = "ok"
                info = {
                    "last_success": status.last_success_at,
                    "last_error_at": status.last_error_at,
                    "last_error": status.last_error if failing else None,
                    "consecutive_failures": status.consecutive_failures,
                }
            components[f"account:{account.id}"] = {"status": state, **info}
            states.append(state)
        # Safety stops and open write-backs live in the state store: one made by a one-off
        # `calbridge sync`, or before a restart, shows here as well.
        stops = {s.target_id: s for s in self._state.stops.all()}
        open_entries = Counter(e.target_id for e in self._state.journal.open_entries())
        for target in settings.caldav:
            info = dict(self.targets.get(target.id, {}))
            stop = stops.get(target.id)
            if stop is not None:
                info["status"] = "degraded"
                info["safety_stop"] = describe_stop(
                    target.id, StopKind(stop.kind), stop.changed, stop.owned
                )
                info["safety_stop_state"] = str(stop.state)
            if open_entries.get(target.id):
                info["status"] = "degraded"
                info["open_writebacks"] = open_entries[target.id]
            if not info:
                continue
            components[f"caldav:{target.id}"] = info
            if info.get("status") == "degraded":
                states.append("degraded")
        if self.state_error is not None:
            components["state"] = {"status": "degraded", "error": self.state_error}
            states.append("degraded")
        if not self._scheduler_running():
            overall: Status = "failing"
        elif not states or all(s == "ok" for s in states):
            overall = "ok" if states or not settings.accounts else "starting"
        elif all(s == "starting" for s in states):
            overall = "starting"
        elif all(s == "failing" for s in states):
            overall = "failing"
        else:
            overall = "degraded"
        return HealthReport(overall, components)
