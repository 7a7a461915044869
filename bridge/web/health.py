"""What /healthz reports: the daemon fills a :class:`HealthReport` from its own state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Status = Literal["ok", "degraded", "starting", "failing"]


@dataclass(frozen=True)
class HealthReport:
    status: Status
    components: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def http_status(self) -> int:
        return 200 if self.status in ("ok", "degraded") else 503


class HealthSource(Protocol):
    def health(self) -> HealthReport: ...


class StaticHealth:
    """A fixed report (tests, the feed server used alone)."""

    def __init__(self, report: HealthReport | None = None) -> None:
        self.report = report or HealthReport("ok")

    def health(self) -> HealthReport:
        return self.report
