"""[oauth] and [state] encryption_key_*: institution mode's config, each mistake one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import account_token, caldav_password, settings_from, state_vault
from bridge.config.schema import person_target
from bridge.errors import ConfigError, EncryptionKeyError
from bridge.state.vault import generate_key

OAUTH = {
    "canvas_url": "https://canvas.example.edu",
    "client_id": "170000000000123",
    "client_secret_env": "CANVAS_CLIENT_SECRET",
}
STATE = {"encryption_key_env": "CALBRIDGE_STATE_KEYS"}


def test_oauth_builds_the_client_options_and_people_accounts() -> None:
    settings = settings_from(
        {"state": STATE, "http": {"public_url": "https://cal.example.edu"}, "oauth": OAUTH}
    )
    assert settings.oauth is not None
    options = settings.oauth.options("s3cret", settings.http.base_url)
    assert options.redirect_uri == "https://cal.example.edu/oauth/callback"
    assert options.purpose == "calbridge calendars" and options.scopes == ()
    assert settings.oauth.canvas_host == "canvas.example.edu"
    account = settings.oauth.person_account("u7")
    assert account.canvas_url == "https://canvas.example.edu" and account.id == "u7"
    # a person's account names no token source: asking for one is an error, never a token
    with pytest.raises(ConfigError, match=r"accounts\[u7\]\.token"):
        account_token(account)
    target = person_target(
        "u7.c1",
        "u7",
        url="https://dav.example.com/",
        username="bob",
        calendar="Canvas",
        include=["conferences"],
        timezone="Europe/Berlin",
        writeback=False,
    )
    with pytest.raises(ConfigError, match=r"caldav\[u7\.c1\]\.password"):
        caldav_password(target)
    with pytest.raises(ValueError, match="user name or password in the URL"):
        person_target(
            "u7.c2",
            "u7",
            url="https://bob:pw@dav.example.com/",
            username="bob",
            calendar="Canvas",
            include=[],
            timezone=None,
            writeback=True,
        )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"oauth": OAUTH}, "[oauth] needs [state] encryption_key_file"),
        (
            {"state": STATE, "oauth": {**OAUTH, "client_secret_env": None}},
            "missing client_secret_file, client_secret_credential or client_secret_env",
        ),
        (
            {"state": STATE, "oauth": {**OAUTH, "client_secret": "inline"}},
            "client_secret",
        ),
        (
            {"state": {**STATE, "encryption_key_file": "/k"}, "oauth": OAUTH},
            "give only one of encryption_key_file, encryption_key_env",
        ),
        (
            {"state": STATE, "oauth": {**OAUTH, "canvas_url": "http://canvas.example.edu"}},
            "plain http",
        ),
        (
            {
                "state": STATE,
                "oauth": OAUTH,
                "accounts": [{"id": "u1", "canvas_url": "https://c.example.edu", "token_env": "T"}],
            },
            "accounts: id 'u1' has the shape of the ids given to people",
        ),
    ],
)
def test_oauth_mistakes_name_the_key(data: dict[str, object], message: str) -> None:
    data = {
        k: ({kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict) else v)
        for k, v in data.items()
    }
    with pytest.raises(ConfigError) as caught:
        settings_from(data)
    assert message in str(caught.value)


def test_without_oauth_person_shaped_ids_stay_allowed() -> None:
    settings = settings_from(
        {"accounts": [{"id": "u1", "canvas_url": "https://c.example.edu", "token_env": "T"}]}
    )
    assert settings.accounts[0].id == "u1" and state_vault(settings.state) is None


def test_keys_come_from_a_file_and_errors_name_the_file(tmp_path: Path) -> None:
    keys = tmp_path / "state.keys"
    keys.write_text(f"{generate_key()}\n{generate_key()}\n")
    settings = settings_from({"state": {"encryption_key_file": str(keys)}})
    vault = state_vault(settings.state)
    assert vault is not None and vault.key_count == 2
    assert vault.decrypt(vault.encrypt("token"), "a token") == "token"
    keys.write_text("not-a-key\n")
    with pytest.raises(EncryptionKeyError, match=f"key 1 is not a Fernet key.*{keys}"):
        state_vault(settings.state)
    keys.unlink()
    with pytest.raises(ConfigError, match=r"state\.encryption_key_file"):
        state_vault(settings.state)
