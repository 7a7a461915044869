"""One person's Canvas OAuth2 tokens, as the OAuth adapter hands them to the rest of calbridge.

A plain record: the adapter (``bridge.canvas.oauth``) fills it from Canvas's token answer, the
state store will keep it (encrypted), the read path swaps it for a refreshed one. The two
tokens are credentials for the person's whole Canvas account, so they are left out of
``repr()``: a record that reaches a log line or an exception shows who it belongs to, never
what it unlocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta


@dataclass(frozen=True)
class TokenSet:
    """An access token (valid until ``expires_at``), the refresh token that renews it, and the
    Canvas user they belong to. ``expires_at`` is None when Canvas gave no expiry (keys issued
    before October 2015)."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime | None
    user_id: int
    user_name: str

    def expires_within(self, leeway: timedelta, now: datetime) -> bool:
        """True when the access token is expired, or will be within ``leeway`` of ``now``."""
        return self.expires_at is not None and self.expires_at - leeway <= now

    def renewed(self, access_token: str, expires_at: datetime | None) -> TokenSet:
        """This set after a refresh: a new access token, the same refresh token and user."""
        return replace(self, access_token=access_token, expires_at=expires_at)
