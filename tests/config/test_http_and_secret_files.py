"""Config keys of the HTTP surface and secret handling: userinfo in CalDAV URLs refused
without echoing the password, readable secret files warned about, admin listener keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import admin_token, permission_warnings, settings_from
from bridge.daemon.cycle import Syncer
from bridge.errors import ConfigError
from bridge.state import open_state
from bridge.web.served import ServedFeeds
from tests.conftest import Sim

ACCOUNT = {"id": "alice", "canvas_url": "https://canvas.example.edu", "token_env": "ALICE_TOKEN"}


def caldav(url: str) -> dict[str, object]:
    return {
        "accounts": [ACCOUNT],
        "caldav": [
            {
                "id": "phone",
                "account": "alice",
                "url": url,
                "username": "alice",
                "password_env": "DAV_PW",
            }
        ],
    }


@pytest.mark.parametrize(
    "url",
    [
        "https://alice:hunter2-dav-pw@dav.example.com/",
        "https://alice@dav.example.com/",
        "http://:hunter2-dav-pw@127.0.0.1:5232/",
        "ftp://alice:hunter2-dav-pw@dav.example.com/",
    ],
)
def test_userinfo_in_caldav_url_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from(caldav(url))
    message = str(caught.value)
    assert message.startswith("config: caldav[0].url: a user name or password in the URL")
    assert "hunter2" not in message and "alice@" not in message


def test_caldav_url_without_userinfo_is_fine() -> None:
    assert settings_from(caldav("https://dav.example.com/a@b/")).caldav[0].url.endswith("a@b")


@pytest.mark.parametrize(
    ("http", "key"),
    [
        ({"admin_listen": "nowhere"}, "http.admin_listen"),
        ({"listen": "127.0.0.1:9000", "admin_listen": "127.0.0.1:9000"}, "http"),
        ({"header_timeout": "0s"}, "http"),
        ({"max_connections": 2}, "http.max_connections"),
    ],
)
def test_bad_http_keys_name_the_key(http: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^config: {key}: "):
        settings_from({"http": http})


def test_admin_listen_off_and_token(tmp_path: Path) -> None:
    assert not settings_from({"http": {"admin_listen": "off"}}).http.admin_enabled
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(ConfigError, match=r"http\.admin_token_file: the token must have"):
        admin_token(settings_from({"http": {"admin_token_file": str(short)}}).http)
    good = tmp_path / "good"
    good.write_text("a-long-enough-admin-token\n")
    assert admin_token(settings_from({"http": {"admin_token_file": str(good)}}).http) == (
        "a-long-enough-admin-token"
    )


def test_readable_config_and_secret_files_are_warned_about(tmp_path: Path) -> None:
    token = tmp_path / "alice.token"
    token.write_text("not-a-real-token")
    config = tmp_path / "config.toml"
    config.write_text(f"""
[state]
url = "sqlite:///{tmp_path / "state.sqlite3"}"
[[accounts]]
id = "alice"
canvas_url = "http://127.0.0.1:9"
token_file = "{token}"
""")
    token.chmod(0o644)
    config.chmod(0o640)
    settings = settings_from(
        {"accounts": [{**ACCOUNT, "token_env": None, "token_file": str(token)}]}
    )
    warnings = permission_warnings(settings, config)
    assert warnings == [
        f"config file: {config} can be read by other users (mode 0640); run chmod 600 {config}",
        f"accounts[alice].token_file: {token} can be read by other users (mode 0644); run chmod 600 {token}",
    ]
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"warning: accounts[alice].token_file: {token} can be read by other users" in out.stdout
    assert f"warning: config file: {config} can be read" in out.stdout
    token.chmod(0o600)
    config.chmod(0o600)
    assert permission_warnings(settings, config) == []


async def test_a_token_replaced_in_its_file_is_used_from_the_next_cycle(
    sim: Sim, tmp_path: Path
) -> None:
    """Secrets are read at the edge, every cycle: rotating a token needs no restart."""
    token = tmp_path / "alice.token"
    token.write_text("not-the-token-yet-0000")
    settings = settings_from(
        {
            "state": {"url": f"sqlite:///{tmp_path / 'state.sqlite3'}"},
            "accounts": [
                {"id": "alice", "canvas_url": sim.url, "token_file": str(token), "uid_host": "x"}
            ],
        }
    )
    state = open_state(settings.state.database_url())
    try:
        syncer = Syncer(settings, state, ServedFeeds(), client_options={"backoff_base": 0.01})
        refused = await syncer.sync_account(settings.accounts[0])
        assert not refused.ok and "token" in (refused.error or "")
        token.write_text(sim.tokens["alice"] + "\n")
        accepted = await syncer.sync_account(settings.accounts[0])
        assert accepted.ok, accepted.error
    finally:
        state.close()
