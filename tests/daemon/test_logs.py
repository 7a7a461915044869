"""Logging as the daemon sets it up: secrets redacted in tracebacks too (text and JSON), and
conditions that repeat per event logged once per interval."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap


def run_logging(fmt: str, body: str) -> str:
    """Run ``body`` after ``setup_logging`` in a fresh interpreter; its stderr."""
    code = textwrap.dedent(f"""
        import logging
        from bridge.daemon.logs import register_secret, setup_logging
        setup_logging("info", {fmt!r})
        register_secret("tok-SUPER-SECRET-123")
    """) + textwrap.dedent(body)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return out.stderr


FAILING = """
    try:
        raise RuntimeError("Canvas said no to tok-SUPER-SECRET-123")
    except RuntimeError:
        logging.getLogger("bridge.test").exception("poll failed for %s", "tok-SUPER-SECRET-123")
"""


def test_text_tracebacks_are_redacted() -> None:
    err = run_logging("text", FAILING)
    assert "Traceback" in err and "RuntimeError: Canvas said no to ***" in err
    assert "poll failed for ***" in err
    assert "tok-SUPER-SECRET-123" not in err


def test_json_tracebacks_are_redacted() -> None:
    err = run_logging("json", FAILING)
    record = json.loads(err.strip().splitlines()[-1])
    assert "RuntimeError: Canvas said no to ***" in record["exception"]
    assert "tok-SUPER-SECRET-123" not in err


def test_repeated_resource_errors_are_logged_once_per_interval() -> None:
    err = run_logging(
        "text",
        """
        import time
        from bridge.daemon import logs
        for handler in logging.getLogger().handlers:
            for f in handler.filters:
                if isinstance(f, logs.RateLimitFilter):
                    f.interval = 0.5
        for _ in range(10_000):
            try:
                raise OSError(24, "Too many open files")
            except OSError:
                logging.getLogger("asyncio").error(
                    "socket.accept() out of system resource\\nsocket: <fd=9>", exc_info=True
                )
        time.sleep(0.6)
        logging.getLogger("asyncio").error("socket.accept() out of system resource\\nsocket: <fd=9>")
        for _ in range(3):
            logging.getLogger("bridge.daemon").warning("ordinary warning")
        """,
    )
    assert err.count("socket.accept() out of system resource") == 2
    assert "(9999 more like this in the last 0.5s were not logged)" in err
    assert err.count("ordinary warning") == 3  # only asyncio and uvicorn are limited
    assert len(err) < 5_000


def test_rate_limit_filter_keys_on_the_first_line() -> None:
    from bridge.daemon.logs import RateLimitFilter

    f = RateLimitFilter(interval=60)

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)

    assert f.filter(record("asyncio", "accept failed\nsocket: fd=1"))
    assert not f.filter(record("asyncio", "accept failed\nsocket: fd=2"))
    assert f.filter(record("asyncio", "another condition"))
    assert f.filter(record("uvicorn.error", "accept failed"))
    assert f.filter(record("bridge.web", "accept failed")) and f.filter(
        record("bridge.web", "accept failed")
    )


def test_twenty_thousand_secrets_are_redacted_at_the_cost_of_a_few() -> None:
    """A daemon for 10,000 people registers 20,000 secrets; each log line (one per feed
    request, with the access log on) must not try them one by one (~4 ms a line)."""
    err = run_logging(
        "text",
        """
        import secrets, time
        many = [secrets.token_urlsafe(24) for _ in range(20_000)] + ["a-b~c/d" + "x" * 10]
        for s in many:
            register_secret(s)
        register_secret(many[5] + "tail")  # one secret inside another: the longer goes
        log = logging.getLogger("bridge.web")
        log.info("GET /feeds/alice/%s.ics and %s, %s", many[7], many[-1], many[5] + "tail")
        log.info("prefix only: %s", many[3][:10])
        started = time.perf_counter()
        for _ in range(1000):
            log.info("GET /feeds/alice/<redacted>.ics 304 0.1ms")
        print(f"ELAPSED {time.perf_counter() - started:.3f}", file=sys.stderr)
        """.replace("print(", "import sys; print(", 1),
    )
    first, second = err.splitlines()[:2]
    assert first.endswith("GET /feeds/alice/***.ics and ***, ***"), first
    assert "prefix only: " in second and "***" not in second
    elapsed = float(err.rsplit("ELAPSED ", 1)[1])
    assert elapsed < 2.0, elapsed  # trying every secret: ~8 s here; one pass: ~0.1 s
