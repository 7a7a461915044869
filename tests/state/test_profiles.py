"""Who each token belongs to, shared through the store (revision 0009) on SQLite and
PostgreSQL: rows under a keyed digest (never the token), the same digest in every process on
one store, a profile trusted only while fresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet
from sqlalchemy import text

from bridge.state import StateStore
from bridge.state.vault import Vault

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CANVAS = "https://canvas.example.edu"
TOKEN = "7~token-of-alice-that-must-never-be-stored"


def test_profiles_are_shared_under_a_keyed_digest_and_trusted_while_fresh(state_url: str) -> None:
    one, two = StateStore(state_url), StateStore(state_url)  # two replicas on one store
    try:
        digest = one.profiles.digest(CANVAS, TOKEN)
        assert two.profiles.digest(CANVAS, TOKEN) == digest  # the key is the store's, shared
        assert one.profiles.digest(CANVAS, "another token") != digest
        assert one.profiles.digest("https://other.example.edu", TOKEN) != digest
        assert two.profiles.get(digest, NOW - timedelta(days=1)) is None
        one.profiles.put(digest, '{"id": 7, "name": "Alice"}', NOW)
        assert two.profiles.get(digest, NOW - timedelta(days=1)) == (
            '{"id": 7, "name": "Alice"}',
            NOW,
        )
        assert two.profiles.get(digest, NOW + timedelta(seconds=1)) is None  # too old
        one.profiles.put(digest, '{"id": 7, "name": "Alice L."}', NOW + timedelta(hours=1))
        assert two.profiles.get(digest, NOW) == (
            '{"id": 7, "name": "Alice L."}',
            NOW + timedelta(hours=1),
        )
        with one.session() as s:
            rows = [
                str(v) for row in s.execute(text("SELECT * FROM account_profiles")) for v in row
            ]
            rows += [str(v) for row in s.execute(text("SELECT * FROM state_keys")) for v in row]
        assert not any(TOKEN in value or "token-of-alice" in value for value in rows)
        assert one.profiles.forget_older(NOW + timedelta(hours=2)) == 1
        assert two.profiles.get(digest, NOW) is None
    finally:
        one.close()
        two.close()


def test_with_an_encryption_key_the_digest_key_derives_from_it(state_url: str) -> None:
    key = Fernet.generate_key().decode()
    plain = StateStore(state_url)
    keyed = StateStore(state_url, Vault([key], source="test"))
    again = StateStore(state_url, Vault([key], source="test"))
    try:
        digest = keyed.profiles.digest(CANVAS, TOKEN)
        assert again.profiles.digest(CANVAS, TOKEN) == digest
        assert plain.profiles.digest(CANVAS, TOKEN) != digest
        other = StateStore(state_url, Vault([Fernet.generate_key().decode()], source="test"))
        assert other.profiles.digest(CANVAS, TOKEN) != digest
        other.close()
    finally:
        plain.close()
        keyed.close()
        again.close()
