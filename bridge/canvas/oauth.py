"""Canvas sign-in: the OAuth2 web flow against one developer key, on Authlib's httpx client.

The four things institution mode asks of Canvas (canvas-oauth.md): the authorize URL a browser
is sent to, exchanging the code that comes back, refreshing an access token (Canvas keeps the
same refresh token and sends no new one), and revoking at Disconnect (``DELETE
/login/oauth2/token`` with the token as Bearer — Canvas's own verb, not RFC 7009, so it is sent
by hand). Authlib builds the requests and parses the token answers; this module is the error
boundary: whatever fails comes out as :class:`~bridge.errors.AccessDenied`,
:class:`~bridge.errors.ReconnectNeeded`, :class:`~bridge.errors.OAuthError` or, when Canvas
cannot be reached or answers 5xx, :class:`~bridge.errors.CanvasUnavailable` — with the
tokens and the client secret scrubbed from anything Canvas said.
"""

from __future__ import annotations

import hmac
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bridge import errors
from bridge.canvas.client import validate_base_url
from bridge.model.tokens import TokenSet

with warnings.catch_warnings():
    # Authlib 1.9 prefers the httpx2 package and warns at import when it runs on httpx; its
    # deprecate module also installs an "always" filter at import. Both stay inside this block.
    from authlib.deprecate import AuthlibDeprecationWarning

    warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client
    from authlib.integrations.httpx_client import OAuthError as AuthlibError
    from authlib.oauth2.rfc6749.parameters import prepare_grant_uri

log = logging.getLogger("bridge.canvas.oauth")

AUTHORIZE_PATH = "/login/oauth2/auth"
TOKEN_PATH = "/login/oauth2/token"
DEAD_GRANT = {"invalid_grant", "invalid_request"}  # older Canvas said invalid_request


@dataclass(frozen=True)
class OAuthOptions:
    """One developer key as calbridge uses it. Built by the config layer (which holds the
    defaults); ``scopes`` is empty for a key that does not enforce scopes."""

    canvas_url: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    scopes: tuple[str, ...]
    purpose: str | None
    timeout: float


def callback_code(params: Mapping[str, str], expected_state: str) -> str:
    """The ``code`` of Canvas's redirect back, once its ``state`` is the one this browser was
    given. A refusal is :class:`AccessDenied`; a missing or foreign state an :class:`OAuthError`
    (never exchange a code someone else started: it would sign this browser in as them)."""
    state = params.get("state") or ""
    # bytes: compare_digest refuses non-ASCII str, and the state comes from the query string
    if not expected_state or not hmac.compare_digest(state.encode(), expected_state.encode()):
        raise errors.OAuthError(
            "the sign-in answer does not belong to this browser session (state mismatch)"
        )
    error = params.get("error")
    if error == "access_denied":
        raise errors.AccessDenied("you did not authorize calbridge at Canvas", error=error)
    if error:
        raise errors.OAuthError(
            "Canvas refused the sign-in",
            error=error,
            description=params.get("error_description", ""),
        )
    code = params.get("code")
    if not code:
        raise errors.OAuthError("Canvas's answer carries neither a code nor an error")
    return code


class CanvasOAuth:
    """The OAuth2 flow against one Canvas and one developer key. Holds no token: every call
    takes and returns :class:`TokenSet` records, so one instance serves every person."""

    def __init__(
        self,
        options: OAuthOptions,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        for name in ("client_id", "client_secret", "redirect_uri"):
            if not getattr(options, name).strip():  # a contract: the config checks them first
                raise ValueError(f"the OAuth {name} is empty")
        self.options = options
        self.base_url = validate_base_url(options.canvas_url)
        self._transport = transport
        self._now = now

    def __repr__(self) -> str:
        return f"CanvasOAuth({self.base_url!r}, client_id={self.options.client_id!r})"

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.options.client_id,
            client_secret=self.options.client_secret,
            token_endpoint_auth_method="client_secret_post",
            redirect_uri=self.options.redirect_uri,
            timeout=self.options.timeout,
            transport=self._transport,
            follow_redirects=False,
        )

    # --- the flow ---------------------------------------------------------------------------

    def authorize_url(self, state: str, *, force_login: bool = False) -> str:
        """Where to send the browser: Canvas's authorize page for this key. ``state`` must be
        bound to the browser's session and checked with :func:`callback_code` on return."""
        if not state:
            raise ValueError("state must not be empty")
        extra: dict[str, Any] = {}
        if self.options.purpose:
            extra["purpose"] = self.options.purpose
        if force_login:
            extra["force_login"] = "1"
        url = prepare_grant_uri(
            self.base_url + AUTHORIZE_PATH,
            client_id=self.options.client_id,
            response_type="code",
            redirect_uri=self.options.redirect_uri,
            scope=" ".join(self.options.scopes) or None,
            state=state,
            **extra,
        )
        return str(url)

    async def exchange(self, code: str) -> TokenSet:
        """Trade the code from the redirect for tokens. A code works once."""
        sent = self._now()
        answer = await self._token_request(
            "the sign-in code was refused",
            [code],
            False,
            lambda c: c.fetch_token(
                self.base_url + TOKEN_PATH, grant_type="authorization_code", code=code
            ),
        )
        refresh = answer.get("refresh_token")
        user = _user(answer)
        log.info("Canvas sign-in completed for user %s", user[0])
        return TokenSet(
            access_token=_access_token(answer),
            refresh_token=str(refresh) if refresh else None,
            expires_at=_expiry(answer, sent),
            user_id=user[0],
            user_name=user[1],
        )

    async def refresh(self, tokens: TokenSet) -> TokenSet:
        """A new access token for ``tokens``. The old access token stops working at once;
        Canvas keeps the refresh token. A dead refresh token is :class:`ReconnectNeeded`."""
        if not tokens.refresh_token:
            raise errors.ReconnectNeeded(
                "no refresh token is stored for this Canvas user; connect again",
                method="POST",
                path=TOKEN_PATH,
            )
        refresh_token = tokens.refresh_token
        sent = self._now()
        answer = await self._token_request(
            "the refresh token was refused",
            [refresh_token, tokens.access_token],
            True,
            lambda c: c.refresh_token(
                self.base_url + TOKEN_PATH,
                refresh_token=refresh_token,
                redirect_uri=self.options.redirect_uri,
            ),
        )
        log.info("refreshed the Canvas access token of user %s", tokens.user_id)
        return tokens.renewed(_access_token(answer), _expiry(answer, sent))

    async def revoke(self, tokens: TokenSet) -> None:
        """Disconnect: Canvas deletes the grant (access and refresh token) and the app leaves
        the person's profile. Canvas wants a live access token for this, so an expired one is
        refreshed first; a refresh token Canvas no longer knows means it is revoked already."""
        response = await self._delete(tokens)
        if response.status_code == 401:
            try:
                tokens = await self.refresh(tokens)
            except errors.ReconnectNeeded:
                log.info("the Canvas token of user %s was revoked already", tokens.user_id)
                return
            response = await self._delete(tokens)
        if response.status_code >= 500:
            raise errors.CanvasUnavailable(
                f"Canvas answered {response.status_code}", method="DELETE", path=TOKEN_PATH
            )
        if response.status_code >= 400:
            error, description = _said(response, [tokens.access_token, self.options.client_secret])
            raise errors.OAuthError(
                "Canvas refused to revoke the token",
                error=error,
                description=description,
                method="DELETE",
                path=TOKEN_PATH,
                status=response.status_code,
            )
        log.info("revoked the Canvas token of user %s", tokens.user_id)

    async def _delete(self, tokens: TokenSet) -> httpx.Response:
        async with self._client() as client:
            try:
                return await client.request(
                    "DELETE",
                    self.base_url + TOKEN_PATH,
                    withhold_token=True,
                    headers={"Authorization": f"Bearer {tokens.access_token}"},
                )
            except httpx.HTTPError as exc:
                raise _unreachable(exc, "DELETE") from None

    # --- plumbing ---------------------------------------------------------------------------

    async def _token_request(
        self,
        refused: str,
        secrets: Sequence[str],
        refreshing: bool,
        call: Callable[[AsyncOAuth2Client], Any],
    ) -> Mapping[str, Any]:
        """Run one token-endpoint call; every failure becomes a bridge error here. When
        ``refreshing``, a dead grant means the person must connect again."""
        hide = [*secrets, self.options.client_secret]
        where: dict[str, Any] = {"method": "POST", "path": TOKEN_PATH}
        async with self._client() as client:
            try:
                answer = await call(client)
            except AuthlibError as exc:
                error = _scrub(str(exc.error or ""), hide)
                description = _scrub(str(exc.description or ""), hide)
                kind = errors.OAuthError
                if refreshing and error in DEAD_GRANT:
                    kind = errors.ReconnectNeeded
                raise kind(refused, error=error, description=description, **where) from None
            except httpx.HTTPStatusError as exc:
                status = exc.response.status_code
                if status >= 500:
                    raise errors.CanvasUnavailable(f"Canvas answered {status}", **where) from None
                raise errors.OAuthError(
                    f"{refused}; Canvas answered something that is not an OAuth2 error",
                    status=status,
                    **where,
                ) from None
            except httpx.HTTPError as exc:
                raise _unreachable(exc, "POST") from None
            except ValueError:
                raise errors.OAuthError(
                    "Canvas's token answer is not a JSON object", **where
                ) from None
        if not isinstance(answer, Mapping):
            raise errors.OAuthError("Canvas's token answer is not a JSON object", **where)
        return answer


def _unreachable(exc: httpx.HTTPError, method: str) -> errors.CanvasUnavailable:
    return errors.CanvasUnavailable(
        f"Canvas unreachable ({type(exc).__name__})", method=method, path=TOKEN_PATH
    )


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
    return text


def _said(response: httpx.Response, secrets: Sequence[str]) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    error = body.get("error")
    description = body.get("error_description")
    if not error and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        description = first.get("message") if isinstance(first, dict) else None
    return _scrub(str(error or ""), secrets), _scrub(str(description or ""), secrets)


def _bad_answer(what: str) -> errors.OAuthError:
    return errors.OAuthError(f"Canvas's token answer {what}", method="POST", path=TOKEN_PATH)


def _access_token(answer: Mapping[str, Any]) -> str:
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise _bad_answer("has no access_token")
    kind = str(answer.get("token_type", "Bearer"))
    if kind.lower() != "bearer":
        raise _bad_answer(f"has token_type {kind!r}, not Bearer")
    return token


def _user(answer: Mapping[str, Any]) -> tuple[int, str]:
    user = answer.get("user")
    if not isinstance(user, Mapping) or "id" not in user:
        raise _bad_answer("names no user")
    try:
        return int(user["id"]), str(user.get("name") or "")
    except (TypeError, ValueError):
        raise _bad_answer("has a user id that is not a number") from None


def _expiry(answer: Mapping[str, Any], sent: datetime) -> datetime | None:
    """When the access token expires, counted from when the request was sent (so an answer
    that took long errs on the early side)."""
    raw = answer.get("expires_in")
    if raw is None:
        return None
    try:
        return sent + timedelta(seconds=float(raw))
    except (TypeError, ValueError):
        raise _bad_answer("has an expires_in that is not a number") from None
