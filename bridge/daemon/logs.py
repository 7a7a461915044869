"""Logging that reads well in journald (no timestamps of our own there), or JSON lines.

Under journald each line starts with ``<N>``, its syslog priority (sd-daemon(3)): journald
strips the prefix and stores the line at that priority, so ``journalctl -p warning`` finds the
warnings. Whether stderr is the journal is decided as systemd documents it: ``$JOURNAL_STREAM``
holds the device and inode of the stream, and they must be those of our stderr (a redirected
stderr inherits the variable but is not the journal).

A redaction filter is the last line of defence: every secret the daemon reads (Canvas tokens,
CalDAV passwords, feed secrets) is registered and replaced by ``***`` in any record that would
contain it. Code never logs secrets on purpose; this catches accidents. The formatters redact
their whole output too, because a traceback's text (``exc_text``) only exists after the
filters have run.

Conditions that can repeat thousands of times a second — asyncio's "socket.accept() out of
system resource" when descriptors run out, uvicorn's errors — pass a rate limit: the first one
of a kind is logged, the rest are counted and summed up once per interval.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import TextIO

_SECRETS: set[str] = set()
# Each secret under its first HEAD characters (secrets are at least that long), so a line is
# checked in one pass whatever the number of secrets: a daemon for 10,000 people holds 20,000
# (token and feed secret each), and trying each on every line cost ~4 ms per line — per feed
# request, with the access log on.
HEAD = 6
_BY_HEAD: dict[str, tuple[str, ...]] = {}
FEW = 250  # up to about this many, trying each one is cheaper than the pass
_TRACEBACKS = logging.Formatter()


def register_secret(value: str) -> None:
    if value and len(value) >= HEAD and value not in _SECRETS:
        _BY_HEAD[value[:HEAD]] = (*_BY_HEAD.get(value[:HEAD], ()), value)  # rebound: no lock
        _SECRETS.add(value)


def redact_text(text: str) -> str:
    if len(_SECRETS) <= FEW:
        for secret in tuple(_SECRETS):
            if secret in text:
                text = text.replace(secret, "***")
        return text
    found: set[str] = set()
    heads = _BY_HEAD
    for i in range(len(text) - HEAD + 1):
        candidates = heads.get(text[i : i + HEAD])
        if candidates:
            found.update(c for c in candidates if text.startswith(c, i))
    for secret in sorted(found, key=len, reverse=True):  # a secret inside another: the longer
        text = text.replace(secret, "***")
    return text


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            message = redact_text(record.getMessage())
            record.msg, record.args = message, None
            if record.exc_info and not record.exc_text:
                # Formatters reuse a cached exc_text: fill it here, so a traceback whose
                # exception message holds a secret is redacted too.
                record.exc_text = _TRACEBACKS.formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact_text(record.exc_text)
            if record.stack_info:
                record.stack_info = redact_text(record.stack_info)
        return True


def syslog_priority(levelno: int) -> int:
    """Python's level → syslog priority (crit 2, err 3, warning 4, info 6, debug 7)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def is_journal(stream: TextIO) -> bool:
    """True when ``stream`` is the journald stream systemd connected (``$JOURNAL_STREAM``)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # replaced by a test runner, closed…
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


class JournalPriority(logging.Formatter):
    """Wraps a formatter and puts ``<N>`` before every line of its output (a traceback is
    several journal entries, each of which keeps the record's priority)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


class RateLimitFilter(logging.Filter):
    """At most one record per (logger, message template) per ``interval`` seconds for the
    given loggers; the next one let through says how many were dropped meanwhile."""

    def __init__(self, prefixes: tuple[str, ...] = ("asyncio", "uvicorn"), interval: float = 60.0):
        super().__init__()
        self.prefixes = prefixes
        self.interval = interval
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg).split("\n", 1)[0])
        now = time.monotonic()
        with self._lock:
            last, dropped = self._seen.get(key, (float("-inf"), 0))
            if now - last < self.interval:
                self._seen[key] = (last, dropped + 1)
                return False
            self._seen[key] = (now, 0)
        if dropped:
            record.msg = f"{record.getMessage()} ({dropped} more like this in the last {self.interval:g}s were not logged)"
            record.args = None
        return True


class TextFormatter(logging.Formatter):
    """The plain formatter, redacting its whole output (message *and* traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = redact_text(self.formatException(record.exc_info))
        return redact_text(json.dumps(data, ensure_ascii=False))


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    journal = is_journal(sys.stderr)
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter()
    elif journal:  # journald adds time and unit itself
        formatter = TextFormatter("%(levelname)s %(name)s: %(message)s")
    else:
        formatter = TextFormatter(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
        )
    handler.setFormatter(JournalPriority(formatter) if journal else formatter)
    handler.addFilter(RateLimitFilter())
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in (
        "httpx",
        "httpcore",
        "apscheduler",
        "uvicorn.error",
        "alembic",
        "caldav",
        "niquests",
        "urllib3",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
