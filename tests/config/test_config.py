"""The config schema: every kind of mistake gives one line naming the key; secrets come from
files, credentials or the environment; the example config is valid."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from bridge.canvas.poller import PollOptions
from bridge.canvas.transport import CanvasLimits
from bridge.config import Settings, account_token, load_config, parse_duration, settings_from
from bridge.config.example import example_toml
from bridge.dav.discovery import TargetSettings
from bridge.errors import ConfigError
from bridge.mapping import FeedOptions

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "accounts": [
        {"id": "alice", "canvas_url": "https://canvas.example.edu", "token_env": "ALICE_TOKEN"}
    ]
}


def with_changes(**sections: object) -> dict[str, object]:
    data = {k: [dict(x) for x in v] if isinstance(v, list) else v for k, v in BASE.items()}
    data.update(sections)
    return data


def test_example_config_is_valid() -> None:
    settings = settings_from(tomllib.loads((ROOT / "config.example.toml").read_text()))
    assert (
        settings.feeds[0].include == ["conferences", "reservations"]
        and settings.caldav[0].writeback is True
    )


def sections() -> list[tuple[str, type[BaseModel]]]:
    found = []
    for name, info in Settings.model_fields.items():
        model = getattr(info.annotation, "__args__", (info.annotation,))[0]
        found.append((name, model))
    return found


def test_example_config_is_the_one_the_schema_generates() -> None:
    """config.example.toml cannot drift from the schema: `make docs` writes it, this checks it."""
    committed = (ROOT / "config.example.toml").read_text()
    assert committed == example_toml(), "config.example.toml is out of date: run `make docs`"
    # Every key is in it, with its help above it; uncommented, it still loads.
    for section, model in sections():
        assert f"[{section}]" in committed
        for key, info in model.model_fields.items():
            assert re.search(rf"^(# )?{key} = ", committed, re.M), f"{section}.{key} missing"
            assert info.description and info.description.split()[0] in committed
    # The optional keys shown commented out are valid too, once switched on.
    uncommented = committed.replace("# uid_host = ", "uid_host = ").replace(
        "# admin_token_file = ", "admin_token_file = "
    )
    assert settings_from(tomllib.loads(uncommented)).accounts[0].uid_host == "canvas.example.edu"


def test_every_key_has_help_and_one_default() -> None:
    """The schema is the single source: every key says what it does; the option objects the
    adapters take have no defaults of their own."""
    for section, model in sections():
        for key, info in model.model_fields.items():
            assert info.description, f"{section}.{key} has no description"
    for options in (FeedOptions, TargetSettings, CanvasLimits, PollOptions):
        fields = dataclasses.fields(options)
        assert all(
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            for f in fields
        ), f"{options.__name__} has defaults of its own"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            with_changes(accounts=[{**BASE["accounts"][0], "poll_interval": "5 minutes"}]),  # type: ignore[index]
            "config: accounts[0].poll_interval: '5 minutes' is not a duration (use e.g. 30s, 5m, 1h30m, 7d)",
        ),
        (
            with_changes(accounts=[{**BASE["accounts"][0], "tokn_file": "/x"}]),
            "config: accounts[0].tokn_file: unknown key",
        ),  # type: ignore[index]
        (
            with_changes(accounts=[{"id": "alice", "canvas_url": "https://c.example.edu"}]),
            "missing token_file, token_credential or token_env",
        ),
        (
            with_changes(accounts=[{**BASE["accounts"][0], "token_file": "/t"}]),
            "give only one of token_file, token_env",
        ),  # type: ignore[index]
        (
            with_changes(accounts=[{**BASE["accounts"][0], "canvas_url": "canvas.example.edu"}]),
            "accounts[0].canvas_url: 'canvas.example.edu' is not an http(s) URL",
        ),  # type: ignore[index]
        (
            with_changes(
                accounts=[{**BASE["accounts"][0], "canvas_url": "https://canvas.example.edu/?a=1"}]  # type: ignore[index]
            ),
            "config: accounts[0].canvas_url: the Canvas URL must not have a query string or fragment",
        ),
        (
            with_changes(accounts=[{**BASE["accounts"][0], "conference_contexts": ["section_4"]}]),  # type: ignore[index]
            "'section_4' is not course_<id> or group_<id>",
        ),
        (
            with_changes(
                http={"public_url": "https://cal.example.edu/" + "x" * 200},
                feeds=[{"id": "f", "account": "alice"}],
            ),
            "config: http.public_url: feed URLs would be 269 characters; Google Calendar refuses",
        ),
        (
            with_changes(feeds=[{"id": "f", "account": "bob"}]),
            "feeds[f].account: no account with id 'bob'",
        ),
        (
            with_changes(feeds=[{"id": "f", "account": "alice", "include": ["homework"]}]),
            "feeds[0].include[0]",
        ),
        (
            with_changes(feeds=[{"id": "f", "account": "alice", "timezone": "Mars/Olympus"}]),
            "'Mars/Olympus' is not a time zone name",
        ),
        (with_changes(http={"listen": "localhost"}), "http.listen: 'localhost' is not host:port"),
        (
            with_changes(accounts=[{**BASE["accounts"][0], "poll_interval": "2s"}]),
            "poll_interval must be at least 10s",
        ),  # type: ignore[index]
        (
            with_changes(feeds=[{"id": "f", "account": "alice"}, {"id": "f", "account": "alice"}]),
            "feeds: id 'f' is used twice",
        ),
        ({"stat": {}}, "config: stat: unknown key"),
    ],
)
def test_bad_values_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from(data)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_secrets_from_file_credential_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tok").write_text("file-token-123\n")
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "alice").write_text("credential-token-456")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    monkeypatch.setenv("ALICE_TOKEN", "env-token-789")
    base = {"id": "a", "canvas_url": "https://c.example.edu"}
    assert (
        account_token(
            settings_from({"accounts": [{**base, "token_file": str(tmp_path / "tok")}]}).accounts[0]
        )
        == "file-token-123"
    )
    assert (
        account_token(
            settings_from({"accounts": [{**base, "token_credential": "alice"}]}).accounts[0]
        )
        == "credential-token-456"
    )
    assert (
        account_token(
            settings_from({"accounts": [{**base, "token_env": "ALICE_TOKEN"}]}).accounts[0]
        )
        == "env-token-789"
    )
    missing = settings_from(
        {"accounts": [{**base, "token_file": str(tmp_path / "nope")}]}
    ).accounts[0]
    with pytest.raises(ConfigError, match=r"accounts\[a\]\.token_file: cannot read"):
        account_token(missing)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[http]\nlisten = "127.0.0.1:8765"\n[logging]\nlevel = "info"\n')
    monkeypatch.setenv("CALBRIDGE_HTTP__LISTEN", "127.0.0.1:9999")
    monkeypatch.setenv("CALBRIDGE_LOGGING__LEVEL", "debug")
    settings = load_config(path)
    assert settings.http.listen == "127.0.0.1:9999" and settings.logging.level == "debug"


def test_durations() -> None:
    assert (
        parse_duration("1h30m").total_seconds() == 5400
        and parse_duration("7d").days == 7
        and parse_duration(90).total_seconds() == 90
    )
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_cli_prints_one_line_and_exit_code_3(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[accounts]]\nid = "alice"\ncanvas_url = "https://c.example.edu"\ntoken_env = "X"\npoll_interval = "often"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 3
    assert (
        out.stderr
        == "calbridge: config: accounts[0].poll_interval: 'often' is not a duration (use e.g. 30s, 5m, 1h30m, 7d)\n"
    )
    broken = tmp_path / "broken.toml"
    broken.write_text("[http\nlisten=")
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "-c", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 3 and "not valid TOML" in out.stderr and "Traceback" not in out.stderr


def test_a_bad_conference_context_is_a_config_error() -> None:
    """Checked once, by the schema: the poller takes the codes as given."""
    account = {"id": "a", "canvas_url": "https://c.example.edu", "token_env": "T"}
    with pytest.raises(
        ConfigError, match=r"accounts\[0\]: conference_contexts: 'section_4' is not"
    ):
        settings_from({"accounts": [{**account, "conference_contexts": ["section_4"]}]})
