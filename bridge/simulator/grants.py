"""The simulated Canvas's OAuth2 state: developer keys, pending authorizations, codes, tokens.

What Canvas keeps (canvas-oauth.md): a developer key has a client id, a secret, redirect URIs
and, when it enforces scopes, the scopes it may grant. A code is good for one exchange within
ten minutes. A grant (Canvas's AccessToken row) holds one access token, expiring an hour after
it was issued or refreshed on the simulator's clock, and one refresh token that stays the same
until the grant is deleted (by revoking, by the user on their profile, or by turning the key
off). Everything here is plain data; the HTTP rules live in :mod:`bridge.simulator.oauth`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

TOKEN_LIFETIME = timedelta(hours=1)
CODE_LIFETIME = timedelta(minutes=10)


@dataclass
class DeveloperKey:
    client_id: str
    secret: str
    redirect_uris: list[str]
    name: str = "calbridge"
    scopes: list[str] | None = None  # None: the key does not enforce scopes
    active: bool = True

    @property
    def enforces_scopes(self) -> bool:
        return self.scopes is not None

    def redirect_allowed(self, uri: str) -> bool:
        """Canvas's check: same scheme, and the host equals a registered one's or is a subdomain
        of it; the port and path are not compared."""
        try:
            wanted = urlsplit(uri)
            host = (wanted.hostname or "").lower()
        except ValueError:
            return False
        if not host or wanted.scheme not in ("http", "https"):
            return False
        for registered in self.redirect_uris:
            mine = urlsplit(registered)
            allowed = (mine.hostname or "").lower()
            if mine.scheme == wanted.scheme and (host == allowed or host.endswith("." + allowed)):
                return True
        return False


@dataclass
class PendingAuthorization:
    """What the authorize page was opened with; Canvas keeps it in the login session."""

    key: DeveloperKey
    redirect_uri: str
    state: str | None
    scopes: list[str]
    purpose: str | None


@dataclass
class AuthCode:
    key: DeveloperKey
    user_id: int
    redirect_uri: str
    scopes: list[str]
    purpose: str | None
    expires_at: datetime


@dataclass
class Grant:
    key: DeveloperKey
    user_id: int
    scopes: list[str]
    purpose: str | None
    access_token: str
    refresh_token: str
    expires_at: datetime
    refreshes: int = 0


def _token(prefix: str) -> str:
    return f"{prefix}~{secrets.token_urlsafe(32)}"


@dataclass
class OAuthRegistry:
    """Every developer key and everything issued under them."""

    keys: dict[str, DeveloperKey] = field(default_factory=dict)
    pending: dict[str, PendingAuthorization] = field(default_factory=dict)
    codes: dict[str, AuthCode] = field(default_factory=dict)
    grants: list[Grant] = field(default_factory=list)

    def add_key(
        self,
        client_id: str,
        secret: str,
        redirect_uris: list[str],
        scopes: list[str] | None = None,
        name: str = "calbridge",
    ) -> DeveloperKey:
        key = DeveloperKey(client_id, secret, list(redirect_uris), name, scopes)
        self.keys[client_id] = key
        return key

    def start(self, pending: PendingAuthorization) -> str:
        ident = secrets.token_urlsafe(16)
        self.pending[ident] = pending
        return ident

    def issue_code(self, pending: PendingAuthorization, user_id: int, now: datetime) -> str:
        code = secrets.token_urlsafe(24)
        self.codes[code] = AuthCode(
            pending.key,
            user_id,
            pending.redirect_uri,
            pending.scopes,
            pending.purpose,
            now + CODE_LIFETIME,
        )
        return code

    def take_code(self, code: str, now: datetime) -> AuthCode | None:
        """The code's grant details, once: a second exchange finds nothing."""
        found = self.codes.pop(code, None)
        if found is None or found.expires_at <= now:
            return None
        return found

    def issue(self, code: AuthCode, now: datetime) -> Grant:
        grant = Grant(
            code.key,
            code.user_id,
            code.scopes,
            code.purpose,
            _token("1"),
            _token("1"),
            now + TOKEN_LIFETIME,
        )
        self.grants.append(grant)
        return grant

    def refresh(self, key: DeveloperKey, refresh_token: str, now: datetime) -> Grant | None:
        """A new access token for the grant; the previous one stops working at once."""
        for grant in self.grants:
            if grant.key is key and secrets.compare_digest(
                grant.refresh_token.encode(), refresh_token.encode()
            ):
                grant.access_token = _token("1")
                grant.expires_at = now + TOKEN_LIFETIME
                grant.refreshes += 1
                return grant
        return None

    def by_access_token(self, token: str) -> Grant | None:
        for grant in self.grants:
            if grant.key.active and secrets.compare_digest(
                grant.access_token.encode(), token.encode()
            ):
                return grant
        return None

    def delete(self, grant: Grant) -> None:
        self.grants = [g for g in self.grants if g is not grant]

    def delete_for_user(self, user_id: int) -> int:
        """The user deletes the app's tokens on their profile page."""
        before = len(self.grants)
        self.grants = [g for g in self.grants if g.user_id != user_id]
        return before - len(self.grants)

    def deactivate(self, client_id: str) -> None:
        """An admin turns the key off: every token it issued stops working."""
        key = self.keys[client_id]
        key.active = False
        self.grants = [g for g in self.grants if g.key is not key]
