"""TLS is required for Canvas and CalDAV: plain http only to loopback or when allowed on
purpose — and then `calbridge check` says so."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.canvas.transport import CanvasLimits
from bridge.config import default_canvas_limits, settings_from
from bridge.errors import ConfigError


def account(url: str, **extra: object) -> dict[str, object]:
    return {"id": "alice", "canvas_url": url, "token_env": "ALICE_TOKEN", **extra}


def target(url: str, **extra: object) -> dict[str, object]:
    return {
        "id": "phone",
        "account": "alice",
        "url": url,
        "username": "alice",
        "password_env": "DAV_PW",
        **extra,
    }


@pytest.mark.parametrize(
    "url",
    [
        "https://canvas.example.edu",
        "http://127.0.0.1:8080",
        "http://127.3.4.5",
        "http://localhost:3000",
        "http://[::1]:8080",
    ],
)
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    settings = settings_from({"accounts": [account(url)], "caldav": [target(url)]})
    assert settings.accounts[0].canvas_url == url and settings.insecure_warnings() == []


@pytest.mark.parametrize(
    "url", ["http://canvas.example.edu", "http://10.0.0.5", "http://[2001:db8::1]:80"]
)
def test_plain_http_to_another_host_is_refused_naming_the_key(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from({"accounts": [account(url)]})
    assert str(caught.value).startswith("config: accounts[0].canvas_url: ")
    assert "https" in str(caught.value) and "allow_insecure_http" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        settings_from(
            {"accounts": [account("https://canvas.example.edu")], "caldav": [target(url)]}
        )
    assert str(caught.value).startswith("config: caldav[0].url: ")
    assert "allow_insecure_http" in str(caught.value)


def test_allow_insecure_http_is_accepted_and_warned_about() -> None:
    settings = settings_from(
        {
            "accounts": [account("http://canvas.lan", allow_insecure_http=True)],
            "caldav": [target("http://dav.lan/", allow_insecure_http=True)],
        }
    )
    warnings = settings.insecure_warnings()
    assert warnings == [
        "account alice: WARNING: canvas_url http://canvas.lan is plain http "
        "(allow_insecure_http = true): the Canvas token travels unencrypted",
        "caldav phone: WARNING: url http://dav.lan is plain http "
        "(allow_insecure_http = true): the CalDAV password travels unencrypted",
    ]


def test_limits_come_from_the_config() -> None:
    acct = settings_from({"accounts": [account("https://c.example.edu")]}).accounts[0]
    assert acct.canvas_limits() == default_canvas_limits() == CanvasLimits(8 << 20, 60.0, 300.0)
    acct = settings_from(
        {
            "accounts": [
                account(
                    "https://c.example.edu",
                    max_response_bytes=1_000_000,
                    request_deadline="20s",
                    poll_deadline="2m",
                )
            ]
        }
    ).accounts[0]
    assert acct.request_deadline == timedelta(seconds=20)
    assert acct.canvas_limits() == CanvasLimits(1_000_000, 20.0, 120.0)
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.max_response_bytes: "):
        settings_from({"accounts": [account("https://c.example.edu", max_response_bytes=10)]})


def test_check_prints_the_warning(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    (tmp_path / "token").write_text("t")
    config.write_text(
        f'[state]\nurl = "sqlite:///{tmp_path / "state.sqlite3"}"\n'
        f'[[accounts]]\nid = "alice"\ncanvas_url = "http://127.0.0.1:9"\n'
        f'token_file = "{tmp_path / "token"}"\n'
        f'[[accounts]]\nid = "bob"\ncanvas_url = "http://canvas.invalid"\n'
        f'allow_insecure_http = true\ntoken_file = "{tmp_path / "token"}"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    lines = done.stdout.splitlines()
    assert lines[0].startswith("config: ok"), done.stdout + done.stderr
    assert lines[1] == (
        "account bob: WARNING: canvas_url http://canvas.invalid is plain http "
        "(allow_insecure_http = true): the Canvas token travels unencrypted"
    )
    assert not any("alice: WARNING" in line for line in lines)  # loopback needs no warning
