"""The line logged (and shown in /healthz) when the cluster's job worker stops by itself."""

from __future__ import annotations

import pytest

from bridge.daemon.cluster import stop_reason


def _wrapped(message: str, cause: str) -> Exception:
    try:
        try:
            raise OSError(cause)
        except OSError as inner:
            raise RuntimeError(message) from inner
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize(
    ("message", "cause", "expected"),
    [
        (
            "connection lost",
            "server closed the connection\nunexpectedly",
            "RuntimeError: connection lost (OSError: server closed the connection)",
        ),
        # an empty cause (psycopg's OperationalError after a restart may say nothing): the
        # reason was read with splitlines()[0], an IndexError inside the restart loop itself
        ("worker failed", "", "RuntimeError: worker failed (OSError: no detail)"),
        ("", "  ", "RuntimeError: no detail (OSError: no detail)"),
    ],
)
def test_the_reason_is_one_line_whatever_the_errors_say(
    message: str, cause: str, expected: str
) -> None:
    assert stop_reason(_wrapped(message, cause)) == expected


def test_an_error_without_a_cause() -> None:
    assert stop_reason(ValueError("bad\nthing")) == "ValueError: bad"
