"""The one error hierarchy of calbridge.

Every error the bridge raises on purpose derives from :class:`BridgeError`. Three families
matter to callers:

* :class:`UserError` — something the person running calbridge must fix (bad config, a bad
  token). The CLI prints one line and exits with :attr:`BridgeError.exit_code`; no traceback.
* :class:`TransientError` — worth retrying later (throttled, 5xx, timeouts). Carries
  ``retry_after`` when the other side said (or we computed) how long to wait.
* everything else — a definite answer that retrying will not change (not found, refused).

Each adapter turns its protocol's answers into these once: Canvas in
``bridge.canvas.transport`` (and ``bridge.canvas.writes`` for write-back commands), CalDAV in
``bridge.dav.boundary``, the database in ``bridge.state.db``. :class:`ConfigError` comes only
from configuration code; an adapter that finds a valid setting unusable raises
:class:`SetupError`. Errors become exit codes in exactly one place (``bridge.cli``) and HTTP
statuses in exactly one place (the feed server). Messages never contain secrets: Canvas errors name the request
by method and path only, never the token or the query string.
"""

from __future__ import annotations

from typing import Any


class BridgeError(Exception):
    """Root of every error calbridge raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UserError(BridgeError):
    """The person running calbridge must fix something; printed as one line."""

    exit_code = 2


class ConfigError(UserError):
    """The configuration is invalid. ``key`` names the offending key (dotted path)."""

    exit_code = 3

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(f"config: {key}: {message}" if key else f"config: {message}")
        self.key = key


class SetupError(UserError):
    """What the config names cannot be used here: the state directory cannot be created, the
    listen address is taken. The config itself is valid (that is :class:`ConfigError`, raised
    only by configuration code); the adapter that met the problem raises this, naming the
    setting as its caller gave it. Exit code 3 too, so systemd does not restart into it."""

    exit_code = 3

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class TransientError(BridgeError):
    """Worth retrying later. ``retry_after`` is seconds, when known."""

    exit_code = 4

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# --- Canvas ---------------------------------------------------------------------------------


class CanvasError(BridgeError):
    """An error answered by (or on the way to) a Canvas instance.

    ``method`` and ``path`` name the request (path without query string, so no token can
    leak through it); ``status`` is the HTTP status when there was a response.
    """

    exit_code = 5

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status: int | None = None,
    ) -> None:
        where = f"{method} {path}".strip()
        text = f"{where}: {message}" if where else message
        if status is not None:
            text = f"{text} (HTTP {status})"
        super().__init__(text)
        self.reason = message
        self.method = method
        self.path = path
        self.status = status


class CanvasAuthError(CanvasError, UserError):
    """The token itself is wrong: invalid, revoked, expired or lacking scopes. Never retried."""

    exit_code = 6


class InvalidToken(CanvasAuthError):
    """Canvas does not know the token."""


class RevokedToken(CanvasAuthError):
    """The token was revoked by its owner or an administrator."""


class ExpiredToken(CanvasAuthError):
    """The token has expired."""


class InsufficientScopes(CanvasAuthError):
    """The token is valid but its scopes do not cover this endpoint."""


class CanvasNotAuthorized(CanvasError):
    """The user is known but may not do this (Canvas 401 "unauthorized" or 403)."""


class CanvasNotFound(CanvasError):
    """The object does not exist, or the feature (tab) is disabled."""


class CanvasValidationError(CanvasError):
    """Canvas rejected the input. ``errors`` holds Canvas's own error body."""

    def __init__(self, message: str, *, errors: Any = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.errors = errors


class ReservationRefused(CanvasError):
    """Canvas refused to reserve or cancel a slot.

    ``canvas_message`` is Canvas's own text, e.g. ``"all slots filled"`` or
    ``"Cannot create or change reservation for past appointment"``; ``reservations`` the
    participant's current reservations in the group when Canvas listed them.
    """

    def __init__(
        self,
        canvas_message: str,
        *,
        reservations: list[dict[str, Any]] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(f"reservation refused: {canvas_message}", **kw)
        self.canvas_message = canvas_message
        self.reservations = reservations or []


class CanvasBadResponse(CanvasError):
    """Canvas answered something the client cannot understand (malformed JSON, odd shape)."""


class CanvasForeignLink(CanvasBadResponse):
    """A ``Link`` header pointed outside the account's Canvas; the token is not sent there.

    ``refused`` is the refused origin (``scheme://host:port``), never a path or query."""

    def __init__(self, refused: str, allowed: str, **kw: Any) -> None:
        super().__init__(
            f"refused to follow a pagination link to {refused}: not the account's Canvas "
            f"({allowed}), and the token goes nowhere else",
            **kw,
        )
        self.refused = refused


class CanvasResponseTooLarge(CanvasBadResponse):
    """A Canvas answer was larger than ``max_response_bytes``; reading stopped there."""


class CanvasThrottled(CanvasError, TransientError):
    """Canvas throttled us (429, or 403 "Rate Limit Exceeded") and retries ran out."""

    exit_code = 4

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        CanvasError.__init__(self, message, **kw)
        self.retry_after = retry_after


class CanvasUnavailable(CanvasError, TransientError):
    """Canvas could not be reached or answered 5xx, and retries ran out."""

    exit_code = 4

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        CanvasError.__init__(self, message, **kw)
        self.retry_after = retry_after


class CanvasTimeout(CanvasUnavailable):
    """No complete answer within a deadline (``request_deadline`` or ``poll_deadline``)."""


# --- Canvas sign-in (OAuth2) ----------------------------------------------------------------


class OAuthError(CanvasError):
    """Canvas's OAuth2 endpoints refused something. ``error`` is Canvas's code (``invalid_client``,
    ``invalid_grant``, …) and ``description`` its words; neither ever holds a token or the
    client secret (the adapter scrubs them before building the error)."""

    def __init__(self, message: str, *, error: str = "", description: str = "", **kw: Any) -> None:
        said = ": ".join(part for part in (error, description) if part)
        super().__init__(f"{message} (Canvas said {said})" if said else message, **kw)
        self.error = error
        self.description = description


class AccessDenied(OAuthError):
    """The person pressed Cancel on Canvas's authorize page (``error=access_denied``)."""


class ReconnectNeeded(OAuthError, CanvasAuthError):
    """The refresh token is dead (``invalid_grant``; older Canvas: ``invalid_request``): the
    person revoked it or an admin turned the key off. Only connecting again helps; retrying
    does not."""


# --- CalDAV ---------------------------------------------------------------------------------


class CalDAVError(BridgeError):
    """An error from a CalDAV server. ``target`` names the [[caldav]] entry, never credentials."""

    exit_code = 7

    def __init__(self, message: str, *, target: str = "", status: int | None = None) -> None:
        text = f"caldav {target}: {message}" if target else f"caldav: {message}"
        if status is not None:
            text = f"{text} (HTTP {status})"
        super().__init__(text)
        self.target = target
        self.status = status


class CalDAVAuthError(CalDAVError, UserError):
    """The CalDAV server refused the credentials."""

    exit_code = 7


class CalDAVConflict(CalDAVError):
    """A precondition failed (412): the server's copy changed since we read it.

    ``expected_etag`` is the ETag the request was conditioned on (None: we expected nothing
    there, a create); ``current_etag`` the server's, when its answer said (None: unknown)."""

    def __init__(
        self,
        message: str,
        *,
        expected_etag: str | None = None,
        current_etag: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.expected_etag = expected_etag
        self.current_etag = current_etag


class CalDAVUnavailable(CalDAVError, TransientError):
    """The CalDAV server could not be reached or answered 5xx."""

    exit_code = 7

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        CalDAVError.__init__(self, message, **kw)
        self.retry_after = retry_after


# --- State store ----------------------------------------------------------------------------


class StateUnavailable(BridgeError):
    """The state database cannot be used right now: locked by another process, the disk is
    full, or an I/O error. Not a config error; retrying later may work once it is fixed."""

    exit_code = 9


# --- Calendar data --------------------------------------------------------------------------


class CalendarDataError(BridgeError):
    """An event or calendar could not be parsed or is invalid. ``context`` names which one."""

    def __init__(self, message: str, *, context: str = "") -> None:
        super().__init__(f"{context}: {message}" if context else message)
        self.context = context


# --- Safety ---------------------------------------------------------------------------------


class SafetyAbort(BridgeError):
    """A safety invariant stopped an operation (e.g. a source suddenly empty)."""

    exit_code = 8
