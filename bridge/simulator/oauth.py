"""Canvas's OAuth2 endpoints, as Canvas answers them (canvas-oauth.md).

* ``GET /login/oauth2/auth`` checks the key and the redirect URI (never redirecting to one the
  key does not allow), then shows the authorize page: pick a sample user (the simulator's
  stand-in for logging in) and press Authorize or Cancel.
* ``POST /login/oauth2/accept`` is that page's form: it redirects back with ``code`` and
  ``state``, or ``error=access_denied``.
* ``POST /login/oauth2/token`` exchanges a code (once) or a refresh token (the same one again
  and again; no new one is returned, the previous access token dies at once).
* ``DELETE /login/oauth2/token`` deletes the grant of the Bearer token.

API requests carrying these tokens are checked by :func:`authenticate`, called from the
simulator's gate: an expired or deleted token is a 401 with ``WWW-Authenticate``, a route the
grant's scopes do not cover a 401 without it.
"""

from __future__ import annotations

import hmac
import html
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from bridge.simulator.grants import AuthCode, DeveloperKey, Grant, PendingAuthorization
from bridge.simulator.requests import Params
from bridge.simulator.responses import json_response
from bridge.simulator.world import SimUser, World

WWW_AUTH = {"www-authenticate": 'Bearer realm="canvas-lms"'}
INVALID_TOKEN = {"errors": [{"message": "Invalid access token."}]}
INSUFFICIENT_SCOPES = {"errors": [{"message": "Insufficient scopes on access token."}]}


def _error(status: int, error: str, description: str) -> Response:
    return json_response({"error": error, "error_description": description}, status)


def _back(redirect_uri: str, **params: str | None) -> RedirectResponse:
    """A 302 to the application's redirect URI with ``params`` added to its query."""
    parts = urlsplit(redirect_uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return RedirectResponse(urlunsplit(parts._replace(query=query)), 302)


def authenticate(world: World, token: str, scope: str) -> SimUser | Response:
    """The user an OAuth access token acts for, or the 401 Canvas answers. Call under the lock."""
    grant = world.oauth.by_access_token(token)
    if grant is None or grant.expires_at <= world.clock.now():
        return json_response(INVALID_TOKEN, 401, WWW_AUTH)
    if grant.key.enforces_scopes and scope not in grant.scopes:
        return json_response(INSUFFICIENT_SCOPES, 401)
    return world.users[grant.user_id]


# --- the authorize page ---------------------------------------------------------------------


def _page(world: World, key: DeveloperKey, ident: str, pending: PendingAuthorization) -> str:
    esc = html.escape
    users = "\n".join(
        f'<li><label><input type="radio" name="user_id" value="{u.id}"{" checked" if i == 0 else ""}>'
        f" {esc(u.name)} <small>({esc(u.login_id)})</small></label></li>"
        for i, u in enumerate(world.users.values())
    )
    purpose = f"<p>Purpose: {esc(pending.purpose)}</p>" if pending.purpose else ""
    scopes = ""
    if pending.scopes:
        items = "".join(f"<li><code>{esc(s)}</code></li>" for s in pending.scopes)
        scopes = f"<p>It asks for these endpoints:</p><ul>{items}</ul>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Authorize {esc(key.name)} — Canvas simulator</title></head>
<body>
<h1>{esc(key.name)} is requesting access to your account</h1>
<p>Canvas simulator at {esc(world.host)}. Log in as:</p>
<form method="post" action="/login/oauth2/accept">
<input type="hidden" name="request" value="{esc(ident)}">
<ul>{users}</ul>
{purpose}{scopes}
<button type="submit" name="decision" value="authorize">Authorize</button>
<button type="submit" name="decision" value="cancel">Cancel</button>
</form>
</body></html>
"""


def _requested_scopes(params: Params) -> list[str]:
    values = params.getlist("scope")
    return values[-1].split() if values else []  # a repeated parameter keeps only the last


async def authorize(request: Request, world: World) -> Response:
    params = Params(list(request.query_params.multi_items()))
    with world.lock:
        key = world.oauth.keys.get(params.get("client_id") or "")
        if key is None or not key.active:
            return _error(401, "invalid_client", "unknown client")
        redirect_uri = params.get("redirect_uri") or ""
        if not key.redirect_allowed(redirect_uri):
            return _error(400, "invalid_request", "redirect_uri does not match client settings")
        state = params.get("state")
        if params.get("response_type") != "code":
            return _back(
                redirect_uri,
                error="unsupported_response_type",
                error_description="Only response_type=code is permitted",
                state=state,
            )
        scopes = _requested_scopes(params)
        if key.enforces_scopes and (not scopes or not set(scopes) <= set(key.scopes or ())):
            return _back(
                redirect_uri,
                error="invalid_scope",
                error_description="A requested scope is invalid, unknown, malformed, or "
                "exceeds the scope granted by the resource owner.",
                state=state,
            )
        pending = PendingAuthorization(
            key, redirect_uri, state, scopes if key.enforces_scopes else [], params.get("purpose")
        )
        ident = world.oauth.start(pending)
        return HTMLResponse(_page(world, key, ident, pending))


async def accept(request: Request, world: World) -> Response:
    params = await Params.read(request)
    with world.lock:
        pending = world.oauth.pending.pop(params.get("request") or "", None)
        if pending is None:
            return _error(400, "invalid_request", "no authorization is waiting for this form")
        if params.get("decision") != "authorize":
            return _back(pending.redirect_uri, error="access_denied", state=pending.state)
        try:
            user = world.users[int(params.get("user_id") or "")]
        except (KeyError, ValueError):
            return _error(400, "invalid_request", "pick a user to log in as")
        code = world.oauth.issue_code(pending, user.id, world.clock.now())
        return _back(pending.redirect_uri, code=code, state=pending.state)


# --- the token endpoint ---------------------------------------------------------------------


def _answer(world: World, grant: Grant, *, with_refresh: bool) -> Response:
    user = world.users[grant.user_id]
    body: dict[str, object] = {
        "access_token": grant.access_token,
        "token_type": "Bearer",
        "user": {
            "id": user.id,
            "name": user.name,
            "global_id": str(10_000_000_000_000 + user.id),
            "effective_locale": "en",
        },
    }
    if with_refresh:
        body["refresh_token"] = grant.refresh_token
    body["expires_in"] = int((grant.expires_at - world.clock.now()).total_seconds())
    return json_response(body)


def _exchange(world: World, key: DeveloperKey, params: Params) -> Response:
    code = params.get("code")
    if not code:
        return _error(400, "invalid_request", "You must provide the code parameter.")
    found: AuthCode | None = world.oauth.take_code(code, world.clock.now())
    if found is None or found.key is not key:
        return _error(400, "invalid_grant", "authorization_code not found")
    if params.get("redirect_uri") != found.redirect_uri:
        return _error(400, "invalid_grant", "redirect_uri does not match the authorization")
    grant = world.oauth.issue(found, world.clock.now())
    return _answer(world, grant, with_refresh=True)


def _refresh(world: World, key: DeveloperKey, params: Params) -> Response:
    refresh_token = params.get("refresh_token")
    if not refresh_token:
        return _error(400, "invalid_request", "You must provide the refresh_token parameter.")
    grant = world.oauth.refresh(key, refresh_token, world.clock.now())
    if grant is None:
        return _error(400, "invalid_grant", "refresh_token not found")
    return _answer(world, grant, with_refresh=False)


async def token(request: Request, world: World) -> Response:
    params = await Params.read(request)
    with world.lock:
        key = world.oauth.keys.get(params.get("client_id") or "")
        if key is None or not key.active:
            return _error(401, "invalid_client", "unknown client")
        if not _same(params.get("client_secret") or "", key.secret):
            return _error(401, "invalid_client", "invalid client")
        grant_type = params.get("grant_type")
        if grant_type == "authorization_code":
            return _exchange(world, key, params)
        if grant_type == "refresh_token":
            return _refresh(world, key, params)
        return _error(400, "unsupported_grant_type", f"{grant_type} is not a supported grant type")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


async def revoke(request: Request, world: World) -> Response:
    auth = request.headers.get("authorization", "")
    bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    with world.lock:
        grant = world.oauth.by_access_token(bearer) if bearer else None
        if grant is None or grant.expires_at <= world.clock.now():
            return json_response(INVALID_TOKEN, 401, WWW_AUTH)
        world.oauth.delete(grant)
    return json_response({})


def oauth_routes(world: World) -> list[Route]:
    async def run_authorize(request: Request) -> Response:
        return await authorize(request, world)

    async def run_accept(request: Request) -> Response:
        return await accept(request, world)

    async def run_token(request: Request) -> Response:
        if request.method == "DELETE":
            return await revoke(request, world)
        return await token(request, world)

    return [
        Route("/login/oauth2/auth", run_authorize, methods=["GET"]),
        Route("/login/oauth2/accept", run_accept, methods=["POST"]),
        Route("/login/oauth2/token", run_token, methods=["POST", "DELETE"]),
    ]
