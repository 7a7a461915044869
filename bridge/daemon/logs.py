"""Logging that reads well in journald (no timestamps of our own there), or JSON lines.

A redaction filter is the last line of defence: every secret the daemon reads (Canvas tokens,
CalDAV passwords, feed secrets) is registered and replaced by ``***`` in any record that would
contain it. Code never logs secrets on purpose; this catches accidents.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

_SECRETS: set[str] = set()


def register_secret(value: str) -> None:
    if value and len(value) >= 6:
        _SECRETS.add(value)


def redact_text(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            message = redact_text(record.getMessage())
            record.msg, record.args = message, None
            if record.exc_text:
                record.exc_text = redact_text(record.exc_text)
        return True


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
        return json.dumps(data, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif os.environ.get("JOURNAL_STREAM"):  # journald adds time and unit itself
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
            )
        )
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
