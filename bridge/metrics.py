"""calbridge's Prometheus metrics, in one registry of their own.

Labels are ids from the config (account, feed, target), never secrets or URLs. Beside its own
series the registry carries the standard ``process_*`` (memory, CPU, descriptors) and
``python_*`` (interpreter, garbage collector) collectors and ``calbridge_build_info``, so the
usual dashboards and alerts work. The ``*_created`` series (one timestamp per counter child) are
switched off: they double the output and no query uses them.
"""

from __future__ import annotations

import platform

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

from bridge import __version__

disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

BUILD_INFO = Info("calbridge_build", "calbridge's version and Python's", registry=REGISTRY)
BUILD_INFO.info({"version": __version__, "python": platform.python_version()})

POLLS = Counter(
    "calbridge_polls_total",
    "Canvas polls by account and outcome",
    ["account", "outcome"],
    registry=REGISTRY,
)
# One histogram for all accounts: one per account was 17 series each (its buckets, sum and
# count), ~6 KiB of this process's memory per account and as many series for Prometheus to
# store; the dashboard reads its quantiles over all accounts anyway. Per account stay the
# counts of polls by outcome (the "every poll failing" alert) and the last success time.
POLL_SECONDS = Histogram("calbridge_poll_seconds", "Duration of a Canvas poll", registry=REGISTRY)
LAST_POLL_SUCCESS = Gauge(
    "calbridge_last_poll_success_timestamp_seconds",
    "Last successful poll",
    ["account"],
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
RENDERS = Counter(
    "calbridge_renders_total",
    "Feed renders by feed and whether the bytes changed",
    ["feed", "changed"],
    registry=REGISTRY,
)
LAST_RENDER_SUCCESS = Gauge(
    "calbridge_last_render_success_timestamp_seconds",
    "Last successful render",
    ["feed"],
    registry=REGISTRY,
)
FEED_EVENTS = Gauge(
    "calbridge_feed_events", "Events in the last rendered feed", ["feed"], registry=REGISTRY
)
FEED_BYTES = Gauge(
    "calbridge_feed_bytes", "Size of the last rendered feed", ["feed"], registry=REGISTRY
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
