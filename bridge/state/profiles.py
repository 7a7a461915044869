"""Who each token belongs to (``GET /users/self``), shared by every process on one store.

A replica that syncs an account for the first time (or after a restart) reads the profile
another process fetched, while it is fresh, instead of asking Canvas again. A row is keyed by
a keyed digest (HMAC-SHA256) of the Canvas URL and the credential, so the store never holds
a token nor anything that confirms a guessed one without the key. The key is derived from the
first encryption key when one is configured; otherwise it is a random key the store makes
once (``state_keys``). A new key (or token) only means the profile is asked again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from bridge.state.db import serialize, upsert
from bridge.state.schema import AccountProfileRow, StateKeyRow
from bridge.state.vault import NoVault, Vault

Sessions = Callable[[], AbstractContextManager[Session]]
KEY_NAME = "account-profiles"
KEY_PURPOSE = "calbridge account profiles v1"


# built once: read for every account whose profile this process does not know
_PROFILE = select(AccountProfileRow.profile_json, AccountProfileRow.fetched_at).where(
    AccountProfileRow.digest == bindparam("digest")
)


class ProfileStore:
    def __init__(self, sessions: Sessions, reading: Sessions, vault: Vault | NoVault) -> None:
        """``reading``: transactions that only read (no write lock on SQLite)."""
        self._sessions = sessions
        self._reading = reading
        self._vault = vault
        self._key: bytes | None = None

    def _digest_key(self) -> bytes:
        if self._key is None:
            if isinstance(self._vault, Vault):
                self._key = self._vault.derive_key(KEY_PURPOSE)
            else:
                self._key = bytes.fromhex(self._stored_key())
        return self._key

    def _stored_key(self) -> str:
        with self._sessions() as s:
            row = s.get(StateKeyRow, KEY_NAME)
            if row is not None:
                return row.key
            serialize(s, f"state-key:{KEY_NAME}")
            row = s.get(StateKeyRow, KEY_NAME)  # another process may have made it meanwhile
            if row is None:
                row = StateKeyRow(name=KEY_NAME, key=secrets.token_hex(32))
                s.add(row)
            return row.key

    def digest(self, canvas_url: str, credential: str) -> str:
        """The row key of a Canvas and a credential (a token, or a connected person's account
        id, whose Canvas user never changes while their token refreshes)."""
        message = f"{canvas_url}\0{credential}".encode()
        return hmac.new(self._digest_key(), message, hashlib.sha256).hexdigest()

    def get(self, digest: str, fetched_since: datetime) -> tuple[str, datetime] | None:
        """The stored profile JSON and when it was fetched, if fetched at ``fetched_since``
        or later."""
        with self._reading() as s:
            row = s.execute(_PROFILE, {"digest": digest}).first()
        if row is None or row.fetched_at < fetched_since:
            return None
        return row.profile_json, row.fetched_at

    def put(self, digest: str, profile_json: str, fetched_at: datetime) -> None:
        with self._sessions() as s:
            upsert(
                s.connection(),
                AccountProfileRow,
                ["digest"],
                digest=digest,
                profile_json=profile_json,
                fetched_at=fetched_at,
            )

    def forget_older(self, before: datetime) -> int:
        """Drop the profiles fetched before ``before`` (tokens long gone); how many."""
        with self._sessions() as s:
            result = s.execute(
                delete(AccountProfileRow).where(AccountProfileRow.fetched_at < before)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]
