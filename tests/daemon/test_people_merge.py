"""The daemon merges the connected people into its settings every few seconds: when nothing it
reads of them changed, the merge hands back the very same settings (nothing to apply, no
config entry rebuilt per person); any change of a person's state, feeds or calendars, or new
settings (a reload), gives new ones."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bridge.config import load_config
from bridge.daemon.people import People
from bridge.model.people import Connection
from bridge.model.tokens import TokenSet
from bridge.state import open_state
from bridge.state.vault import Vault, generate_key
from tests.helpers.portal import write_config
from tests.helpers.servers import free_port
from tests.helpers.sim import Sim


def tokens(user_id: int, name: str) -> TokenSet:
    return TokenSet(
        access_token=f"a{user_id}", refresh_token="r", expires_at=None, user_id=user_id,
        user_name=name,
    )  # fmt: skip


def test_an_unchanged_merge_returns_the_same_settings(sim: Sim, tmp_path: Path) -> None:
    key = generate_key()
    config = load_config(write_config(tmp_path, sim, free_port(), key))
    state = open_state(config.state.database_url(), Vault([key], source="test"))
    try:
        people = People(state, config)
        ann = people.connect(tokens(7, "Ann"))
        first = people.merge(config)
        assert ann.account_id in {a.id for a in first.settings.accounts}
        assert people.polled(ann.account_id, datetime.now(UTC))  # a sync time is no change
        again = people.merge(config)
        assert again.settings is first.settings
        assert again.feed_secrets == first.feed_secrets

        bob = people.connect(tokens(8, "Bob"))
        with_bob = people.merge(config)
        assert with_bob.settings is not first.settings
        assert bob.account_id in {a.id for a in with_bob.settings.accounts}

        state.people.set_connection(bob.id, Connection.DISABLED)
        without_bob = people.merge(config)
        assert bob.account_id not in {a.id for a in without_bob.settings.accounts}

        reloaded = load_config(tmp_path / "config.toml")  # SIGHUP: new settings object
        assert people.merge(reloaded).settings is not without_bob.settings
    finally:
        state.close()
