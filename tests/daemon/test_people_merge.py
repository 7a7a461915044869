"""The daemon merges the connected people into its settings every few seconds: when nothing it
reads of them changed, the merge hands back the very same settings (nothing to apply, no
config entry rebuilt per person); any change of a person's state, feeds or calendars, or new
settings (a reload), gives new ones."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event

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


def test_an_unchanged_merge_reads_one_row_and_sees_a_change_made_elsewhere(
    sim: Sim, tmp_path: Path, state_url: str
) -> None:
    """On SQLite and PostgreSQL: with nothing changed the merge reads the people's version and
    nothing else (it read every person, feed and calendar: 163 ms with 2,000 people); a change
    made through another store (the pages, ``calbridge users``) moves the version and is in
    the next merge."""
    key = generate_key()
    config = load_config(write_config(tmp_path, sim, free_port(), key))
    state = open_state(state_url, Vault([key], source="test"))
    elsewhere = open_state(state_url, Vault([key], source="test"))
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().split(" ", 1)[0].upper() in {"SELECT", "INSERT", "UPDATE", "DELETE"}:
            statements.append(statement)

    try:
        people = People(state, config)
        ann = people.connect(tokens(7, "Ann"))
        first = people.merge(config)
        event.listen(state.engine, "before_cursor_execute", record)
        again = people.merge(config)
        assert again.settings is first.settings
        assert len(statements) == 1 and "people_version" in statements[0], statements

        feed = elsewhere.people.add_feed(ann.id, ["conferences"])
        with_feed = people.merge(config)
        assert feed.feed_id in {f.id for f in with_feed.settings.feeds}
        rotated = elsewhere.people.rotate_feed_secret(ann.id, feed.id)
        assert people.merge(config).feed_secrets[feed.feed_id] == rotated.secret
        elsewhere.people.set_connection(ann.id, Connection.DISABLED)
        assert ann.account_id not in {a.id for a in people.merge(config).settings.accounts}
    finally:
        if event.contains(state.engine, "before_cursor_execute", record):
            event.remove(state.engine, "before_cursor_execute", record)
        elsewhere.close()
        state.close()
