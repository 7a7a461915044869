"""calbridge's Prometheus metrics, in one registry of their own.

Labels are ids from the config (account, feed, target), never secrets or URLs. Beside its own
series the registry carries the standard ``process_*`` (memory, CPU, descriptors) and
``python_*`` (interpreter, garbage collector) collectors and ``calbridge_build_info``, so the
usual dashboards and alerts work. The ``*_created`` series (one timestamp per counter child) are
switched off: they double the output and no query uses them. The families with a child per
account or feed are :class:`PerOutput`: a child is one float in a dict, not an object with its
own lock (with 10,000 accounts that is ~3.7 KiB per account less).
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Iterator
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge import __version__

disable_created_metrics()


class PerOutput(Collector):
    """A counter or gauge with a child per account or feed, each child one float in a dict.

    prometheus_client keeps a child object per label set (with its own lock and value object:
    ~600 bytes); with 10,000 accounts the six per-account and per-feed families cost ~4 KiB
    per account. Here a child is a dict entry (~100 bytes), built into samples when scraped.
    Used as prometheus_client's are: ``FAMILY.labels("alice", "ok").inc()`` or ``.set(t)``.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: list[str],
        kind: Literal["counter", "gauge"],
        registry: CollectorRegistry,
    ) -> None:
        self.name, self.documentation, self.labelnames, self.kind = (
            name,
            documentation,
            labelnames,
            kind,
        )
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def labels(self, *values: str) -> _Child:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
        return _Child(self, values)

    def _add(self, key: tuple[str, ...], amount: float) -> None:
        if amount < 0 and self.kind == "counter":
            raise ValueError("counters only go up")
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def _set(self, key: tuple[str, ...], value: float) -> None:
        if self.kind == "counter":
            raise ValueError("a counter cannot be set")
        with self._lock:
            self._values[key] = value

    def _family(self) -> CounterMetricFamily | GaugeMetricFamily:
        if self.kind == "counter":
            name = self.name.removesuffix("_total")
            return CounterMetricFamily(name, self.documentation, labels=self.labelnames)
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        with self._lock:
            values = list(self._values.items())
        for key, value in values:
            family.add_metric(list(key), value)
        yield family


class _Child:
    __slots__ = ("_family", "_key")

    def __init__(self, family: PerOutput, key: tuple[str, ...]) -> None:
        self._family, self._key = family, key

    def inc(self, amount: float = 1.0) -> None:
        self._family._add(self._key, amount)

    def set(self, value: float) -> None:
        self._family._set(self._key, value)


REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

BUILD_INFO = Info("calbridge_build", "calbridge's version and Python's", registry=REGISTRY)
BUILD_INFO.info({"version": __version__, "python": platform.python_version()})

POLLS = PerOutput(
    "calbridge_polls_total",
    "Canvas polls by account and outcome",
    ["account", "outcome"],
    "counter",
    registry=REGISTRY,
)
# One histogram for all accounts: one per account was 17 series each (its buckets, sum and
# count), ~6 KiB of this process's memory per account and as many series for Prometheus to
# store; the dashboard reads its quantiles over all accounts anyway. Per account stay the
# counts of polls by outcome (the "every poll failing" alert) and the last success time.
POLL_SECONDS = Histogram("calbridge_poll_seconds", "Duration of a Canvas poll", registry=REGISTRY)
LAST_POLL_SUCCESS = PerOutput(
    "calbridge_last_poll_success_timestamp_seconds",
    "Last successful poll",
    ["account"],
    "gauge",
    registry=REGISTRY,
)
CANVAS_REQUESTS = Counter(
    "calbridge_canvas_requests_total",
    "Canvas HTTP responses by status",
    ["status"],
    registry=REGISTRY,
)
CANVAS_THROTTLED = Counter(
    "calbridge_canvas_throttled_total", "Canvas throttling responses (403/429)", registry=REGISTRY
)
RENDERS = PerOutput(
    "calbridge_renders_total",
    "Feed renders by feed and whether the bytes changed",
    ["feed", "changed"],
    "counter",
    registry=REGISTRY,
)
LAST_RENDER_SUCCESS = PerOutput(
    "calbridge_last_render_success_timestamp_seconds",
    "Last successful render",
    ["feed"],
    "gauge",
    registry=REGISTRY,
)
FEED_EVENTS = PerOutput(
    "calbridge_feed_events",
    "Events in the last rendered feed",
    ["feed"],
    "gauge",
    registry=REGISTRY,
)
FEED_BYTES = PerOutput(
    "calbridge_feed_bytes", "Size of the last rendered feed", ["feed"], "gauge", registry=REGISTRY
)
FEED_REQUESTS = Counter(
    "calbridge_feed_requests_total", "Feed HTTP requests by status", ["status"], registry=REGISTRY
)
CALDAV_OPERATIONS = Counter(
    "calbridge_caldav_operations_total",
    "CalDAV writes by target, operation and outcome",
    ["target", "op", "outcome"],
    registry=REGISTRY,
)
LAST_PUSH_SUCCESS = Gauge(
    "calbridge_last_push_success_timestamp_seconds",
    "Last successful CalDAV push",
    ["target"],
    registry=REGISTRY,
)
WRITEBACKS = Counter(
    "calbridge_writebacks_total",
    "Write-backs to Canvas by action and outcome",
    ["action", "outcome"],
    registry=REGISTRY,
)
SAFETY_STOPS = Gauge(
    "calbridge_safety_stop",
    "1 while a CalDAV calendar's mass change waits for `calbridge writebacks approve`",
    ["target"],
    registry=REGISTRY,
)
WRITEBACKS_OPEN = Gauge(
    "calbridge_writebacks_open",
    "Write-backs not settled yet (pending: outcome unknown; deferred: rate limit)",
    ["target"],
    registry=REGISTRY,
)
ITEM_ERRORS = Counter(
    "calbridge_caldav_item_errors",
    "Calendar objects that could not be read or merged (the rest of the calendar went on)",
    ["target"],
    registry=REGISTRY,
)
PEOPLE = Gauge(
    "calbridge_people",
    "People connected with Canvas sign-in, by state (connected, disabled, reconnect_needed)",
    ["state"],
    registry=REGISTRY,
)

# --- cluster mode: the jobs of this replica ([cluster] enabled) -----------------------------
JOBS = Counter(
    "calbridge_cluster_jobs_total",
    "Account sync jobs this replica ran, by outcome (ok, failed: to be retried or given up, "
    "busy: another process held the account)",
    ["outcome"],
    registry=REGISTRY,
)
JOBS_RETRIED = Counter(
    "calbridge_cluster_jobs_retried_total",
    "Jobs this replica ran that were a retry (of a failed attempt, or of one a dead replica left)",
    registry=REGISTRY,
)
WORKER_RESTARTS = Counter(
    "calbridge_cluster_worker_restarts_total",
    "Times this replica's job worker stopped by itself (the database went away) and was "
    "started again",
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "calbridge_cluster_queue_depth",
    "Account sync jobs waiting in the queue (all replicas), as this replica last read it",
    registry=REGISTRY,
)
JOB_LAG = Histogram(
    "calbridge_cluster_job_lag_seconds",
    "From when an account was due to when a replica started its sync",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
