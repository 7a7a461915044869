"""Connected people in the state store, on SQLite and on PostgreSQL (``state_url``): tokens
encrypted at rest (the raw SQLite bytes, or every value PostgreSQL stores, hold no token), key
rotation, wrong or missing keys, and the records the pages and the CLI will use. People are
connected by driving the simulator's authorize form over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from bridge.canvas.oauth import CanvasOAuth
from bridge.errors import EncryptionKeyError
from bridge.model.people import Connection, NewTarget
from bridge.model.tokens import TokenSet
from bridge.state import open_state
from bridge.state.people import UnknownPerson
from bridge.state.store import StateStore
from bridge.state.vault import Vault, generate_key, parse_keys
from tests.helpers.oauth_flow import options, sign_in
from tests.helpers.postgres import stored_text
from tests.helpers.sim import Sim

HOST = "canvas.example.edu"
SOURCE = "state.encryption_key_file /etc/calbridge/state.key"
T = datetime(2026, 3, 2, 12, tzinfo=UTC)


def raw_bytes(url: str) -> bytes:
    """Everything SQLite wrote (the database file and its write-ahead log); on PostgreSQL,
    every value of every table as the server stores it, in its text form."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return b"".join(
            p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name)
        )
    return stored_text(url)


def count(url: str, table: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as con:
            return int(con.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def tokens(user_id: int = 7, name: str = "Alice Liddell", n: int = 1) -> TokenSet:
    return TokenSet(
        access_token=f"1~access-{n}-Zq8xYtW4pLmN3vB6",
        refresh_token=f"refresh-{n}-Hk29dLs0PqRt7UvW",
        expires_at=T + timedelta(hours=1),
        user_id=user_id,
        user_name=name,
    )


def store(url: str, *keys: str) -> StateStore:
    return open_state(url, Vault(list(keys), source=SOURCE) if keys else None)


async def test_connect_over_http_stores_tokens_encrypted_and_nothing_in_clear(
    sim: Sim, state_url: str
) -> None:
    key = generate_key()
    state = store(state_url, key)
    oauth = CanvasOAuth(options(sim))
    signed_in = await sign_in(oauth, "Bob Dylan")
    person, created = state.people.connect(HOST, signed_in, default_include=["conferences"])
    assert created and person.connection == Connection.CONNECTED
    assert (person.canvas_user_id, person.name, person.canvas_host) == (4, "Bob Dylan", HOST)
    assert [f.include for f in person.feeds] == [("conferences",)]
    target = state.people.add_target(
        person.id,
        NewTarget(
            "http://127.0.0.1:5232/",
            "bob",
            "app-password-9f8e7d6c",
            "Canvas",
            ("reservations",),
            None,
            True,
        ),
    )
    assert state.people.tokens(person.id) == signed_in
    assert state.people.target_password(target.id) == "app-password-9f8e7d6c"
    assert signed_in.access_token not in repr(person) and "app-password" not in repr(target)
    state.close()
    raw = raw_bytes(state_url)
    assert b"Bob Dylan" in raw  # the bytes are readable: the check below means something
    assert signed_in.refresh_token
    for secret in (signed_in.access_token, signed_in.refresh_token, "app-password-9f8e7d6c"):
        assert secret.encode() not in raw
    # the same person signing in again is found, not duplicated; their feeds stay
    again, created = store(state_url, key).people.connect(
        HOST, await sign_in(oauth, "Bob Dylan"), default_include=["conferences"]
    )
    assert not created and again.id == person.id and again.feeds == person.feeds


def test_wrong_key_is_a_clear_error_naming_the_source(state_url: str) -> None:
    state = store(state_url, generate_key())
    person, _ = state.people.connect(HOST, tokens(), default_include=["conferences"])
    state.close()
    other = store(state_url, generate_key())
    with pytest.raises(EncryptionKeyError) as caught:
        other.people.tokens(person.id)
    message = str(caught.value)
    assert "cannot decrypt the Canvas token of person 1" in message
    assert SOURCE in message and "wrong key" in message
    assert "access-1" not in message
    # the rest of the database still works without the key
    assert [p.name for p in open_state(state_url).people.all()] == ["Alice Liddell"]
    with pytest.raises(EncryptionKeyError, match="no encryption key is configured"):
        open_state(state_url).people.tokens(person.id)
    with pytest.raises(EncryptionKeyError, match="no encryption key is configured"):
        open_state(state_url).people.connect(HOST, tokens(8), default_include=[])


def test_malformed_keys_are_refused_by_number() -> None:
    with pytest.raises(EncryptionKeyError, match=r"key 2 is not a Fernet key.*keys from state"):
        Vault([generate_key(), "hunter2"], source=SOURCE)
    with pytest.raises(EncryptionKeyError, match="no encryption key given"):
        Vault(parse_keys("# only a comment\n\n"), source=SOURCE)
    first, second = generate_key(), generate_key()
    assert parse_keys(f"# new first, old after\n{first}\n\n{second}\n") == [first, second]
    assert parse_keys(f"{first},{second}") == [first, second]


def test_rotation_re_encrypts_everything_with_the_new_key(state_url: str) -> None:
    old, new = generate_key(), generate_key()
    state = store(state_url, old)
    alice, _ = state.people.connect(HOST, tokens(7), default_include=["conferences"])
    bob, _ = state.people.connect(HOST, tokens(8, "Bob", 2), default_include=["conferences"])
    state.people.add_target(
        bob.id, NewTarget("https://dav.example/", "bob", "pw-bob-123", "Canvas", (), None, False)
    )
    state.close()
    before = raw_bytes(state_url)
    rotated = store(state_url, new, old)
    assert rotated.people.rotate_keys() == 5  # 2 access + 2 refresh tokens + 1 password
    rotated.close()
    only_new = store(state_url, new)
    assert only_new.people.tokens(alice.id) == tokens(7)
    assert only_new.people.tokens(bob.id) == tokens(8, "Bob", 2)
    assert only_new.people.target_password(only_new.people.get(bob.id).targets[0].id) == (
        "pw-bob-123"
    )
    with pytest.raises(EncryptionKeyError):
        store(state_url, old).people.tokens(alice.id)
    assert raw_bytes(state_url) != before


def test_rotation_without_the_old_key_changes_nothing(state_url: str) -> None:
    old = generate_key()
    state = store(state_url, old)
    alice, _ = state.people.connect(HOST, tokens(7), default_include=[])
    state.close()
    with pytest.raises(EncryptionKeyError, match="keep the old key after the new one"):
        store(state_url, generate_key()).people.rotate_keys()
    assert store(state_url, old).people.tokens(alice.id) == tokens(7)


def test_refresh_reconnect_disable_and_remove(state_url: str) -> None:
    state = store(state_url, generate_key())
    people = state.people
    alice, _ = people.connect(HOST, tokens(7), default_include=["conferences", "reservations"])
    fresh = tokens(7).renewed("1~access-refreshed-Uu7", T + timedelta(hours=2))
    people.store_tokens(alice.id, fresh)
    assert people.tokens(alice.id) == fresh
    assert people.get(alice.id).token_expires_at == T + timedelta(hours=2)
    people.mark_reconnect_needed(alice.id)
    assert people.get(alice.id).connection == Connection.RECONNECT_NEEDED
    assert people.counts() == {
        Connection.CONNECTED: 0,
        Connection.DISABLED: 0,
        Connection.RECONNECT_NEEDED: 1,
    }
    # connecting again brings them back, with their feeds
    back, created = people.connect(HOST, tokens(7, n=3), default_include=[])
    assert not created and back.connection == Connection.CONNECTED and back.feeds == alice.feeds
    people.set_connection(alice.id, Connection.DISABLED)
    people.mark_reconnect_needed(alice.id)  # an administrator's "disabled" is not overridden
    assert people.get(alice.id).connection == Connection.DISABLED
    feed = people.add_feed(alice.id, ["open_slots"], "Europe/Berlin")
    assert feed.feed_id == f"u{alice.id}.f{feed.id}"
    assert people.feed_by_key(feed.feed_id) == feed
    rotated = people.rotate_feed_secret(alice.id, feed.id)
    assert rotated.secret != feed.secret and len(rotated.secret) >= 32
    state.save_snapshot(back.account_id, "{}", T)
    removed = people.remove(alice.id)
    assert removed.id == alice.id and len(removed.feeds) == 2
    assert people.all() == [] and people.feed_by_key(feed.feed_id) is None
    assert state.load_snapshot(back.account_id) is None
    with pytest.raises(UnknownPerson, match="no connected person has id 1"):
        people.get(alice.id)
    assert count(state_url, "person_feeds") == 0
    # ids are never given again: a removed person's feed URL never comes to serve someone else
    bob, _ = people.connect(HOST, tokens(8, "Bob"), default_include=["conferences"])
    assert bob.id == alice.id + 1 and bob.feeds[0].id > feed.id
    # a poll that ends after the person was disabled or removed records nothing
    assert people.record_sync(bob.id, T) is True
    people.set_connection(bob.id, Connection.DISABLED)
    assert people.record_sync(bob.id, T + timedelta(hours=1)) is False
    assert people.get(bob.id).last_sync_at == T
    people.remove(bob.id)
    assert people.record_sync(bob.id, T) is False


def test_one_person_cannot_reach_another_persons_feed(state_url: str) -> None:
    people = store(state_url, generate_key()).people
    alice, _ = people.connect(HOST, tokens(7), default_include=["conferences"])
    bob, _ = people.connect(HOST, tokens(8, "Bob"), default_include=["conferences"])
    alices_feed = alice.feeds[0]
    with pytest.raises(UnknownPerson):
        people.rotate_feed_secret(bob.id, alices_feed.id)
    with pytest.raises(UnknownPerson):
        people.update_feed(bob.id, alices_feed.id, ["open_slots"], None)
    with pytest.raises(UnknownPerson):
        people.remove_feed(bob.id, alices_feed.id)
    assert people.get(alice.id).feeds == (alices_feed,)
    assert people.feed_by_key(f"u{bob.id}.f{alices_feed.id}") is None


def test_revision_0005_upgrades_a_0004_database_and_downgrades(state_url: str) -> None:
    from bridge.state.db import make_engine, upgrade

    engine = make_engine(state_url)
    upgrade(engine, "0004")
    with engine.begin() as con:
        con.execute(
            text(
                "INSERT INTO feed_secrets (feed_id, secret, created_at) "
                "VALUES ('alice', 'kept-secret-1234567890ab', '2026-03-02 12:00:00')"
            )
        )
    engine.dispose()
    state = store(state_url, generate_key())
    assert state.feed_secret("alice") == "kept-secret-1234567890ab"
    sharded = tokens(user_id=170000000000042)  # a global id of a sharded Canvas
    person, _ = state.people.connect(HOST, sharded, default_include=["conferences"])
    assert state.people.find(HOST, 170000000000042) == person
    state.close()
    engine = make_engine(state_url)
    from alembic import command
    from alembic.config import Config

    from bridge.state.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as con:
        config.attributes["connection"] = con
        command.downgrade(config, "0004")
        tables = set(inspect(con).get_table_names())
    assert "people" not in tables and "person_feeds" not in tables and "feed_secrets" in tables
    engine.dispose()


def test_the_session_key_is_derived_from_the_first_key_alike_in_every_process() -> None:
    first, second = generate_key(), generate_key()
    here = Vault([first, second], source="test")
    replica = Vault(parse_keys(f"{first}\n{second}\n"), source="another process")
    key = here.derive_key("calbridge session cookies v1")
    assert len(key) == 32 and key == replica.derive_key("calbridge session cookies v1")
    assert key != here.derive_key("something else")
    assert key != Vault([second, first], source="test").derive_key("calbridge session cookies v1")
    assert first.encode() not in key and key not in first.encode()
    from bridge.state.vault import NoVault

    with pytest.raises(EncryptionKeyError, match="no encryption key is configured"):
        NoVault("state.encryption_key_file").derive_key("calbridge session cookies v1")


def test_the_people_version_moves_with_every_change_a_merge_reads(state_url: str) -> None:
    """The daemon's merge reads one row when this number has not moved: every change to what
    it reads (a person's state, feeds, calendars, a feed's secret) must move it, in the same
    transaction; a refreshed token, a sync time, rotated keys or a refused change need not."""
    state = store(state_url, generate_key())
    people = state.people
    seen = [people.version()]
    assert seen == [0]

    def moved() -> None:
        now = people.version()
        assert now is not None and now > seen[-1]
        seen.append(now)

    def still() -> None:
        assert people.version() == seen[-1]

    alice, _ = people.connect(HOST, tokens(7), default_include=["conferences"])
    moved()
    people.store_tokens(alice.id, tokens(7).renewed("1~access-refreshed-Uu7", T))
    still()
    people.record_sync(alice.id, T)
    still()
    people.mark_reconnect_needed(alice.id)
    moved()
    people.mark_reconnect_needed(alice.id)  # already: nothing changed
    still()
    people.connect(HOST, tokens(7, n=2), default_include=[])
    moved()
    feed = people.add_feed(alice.id, ["open_slots"])
    moved()
    people.update_feed(alice.id, feed.id, ["reservations"], "Europe/Berlin")
    moved()
    people.rotate_feed_secret(alice.id, feed.id)
    moved()
    with pytest.raises(UnknownPerson):
        people.update_feed(alice.id, feed.id + 100, ["reservations"], None)
    still()
    target = people.add_target(
        alice.id,
        NewTarget("https://dav.example/", "alice", "pw-alice-1", "Canvas", (), None, False),
    )
    moved()
    people.remove_target(alice.id, target.id)
    moved()
    people.remove_feed(alice.id, feed.id)
    moved()
    people.set_connection(alice.id, Connection.DISABLED)
    moved()
    people.rotate_keys()
    still()
    people.remove(alice.id)
    moved()
    assert store(state_url, generate_key()).people.version() == seen[-1]  # in the database
