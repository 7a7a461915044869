"""The OAuth client adapter and the refreshing read path, against the simulator over HTTP."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bridge import errors
from bridge.canvas.client import CanvasClient
from bridge.canvas.oauth import CanvasOAuth, callback_code
from bridge.canvas.token_auth import RefreshingAuth
from bridge.model.tokens import TokenSet
from bridge.simulator.sample import SAMPLE_CLIENT_ID, SAMPLE_CLIENT_SECRET
from tests.helpers.oauth_flow import (
    REDIRECT,
    browser_answer,
    callback_params,
    code_from_browser,
    options,
    sign_in,
)
from tests.helpers.options import canvas_client
from tests.helpers.sim import Sim

HOUR = 3600


def reader(sim: Sim, auth: RefreshingAuth) -> CanvasClient:
    return canvas_client(sim.url, auth, backoff_base=0.01, backoff_cap=0.05)


def refreshing(oauth: CanvasOAuth, tokens: TokenSet, **kw: object) -> RefreshingAuth:
    kw.setdefault("leeway", timedelta(minutes=5))
    return RefreshingAuth(tokens, oauth.refresh, **kw)  # type: ignore[arg-type]


def test_authorize_url_carries_what_canvas_needs(sim: Sim) -> None:
    oauth = CanvasOAuth(options(sim, scopes=("url:GET|/api/v1/users/:id", "url:GET|/x")))
    url = oauth.authorize_url("st8", force_login=True)
    assert url.startswith(f"{sim.url}/login/oauth2/auth?")
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert params == {
        "response_type": "code",
        "client_id": SAMPLE_CLIENT_ID,
        "redirect_uri": REDIRECT,
        "state": "st8",
        "scope": "url:GET|/api/v1/users/:id url:GET|/x",
        "purpose": "calbridge calendars",
        "force_login": "1",
    }
    assert "client_secret" not in url and SAMPLE_CLIENT_SECRET not in url


async def test_full_code_flow_over_http(sim: Sim) -> None:
    oauth = CanvasOAuth(options(sim))
    before = datetime.now(UTC)
    tokens = await sign_in(oauth, "Bob Dylan")
    assert (tokens.user_id, tokens.user_name) == (4, "Bob Dylan")
    assert tokens.refresh_token and tokens.access_token != tokens.refresh_token
    assert tokens.expires_at is not None
    assert before + timedelta(seconds=HOUR - 5) <= tokens.expires_at
    assert tokens.expires_at <= datetime.now(UTC) + timedelta(seconds=HOUR)
    async with reader(sim, refreshing(oauth, tokens)) as client:
        assert (await client.me()).name == "Bob Dylan"


async def test_cancel_is_access_denied_and_a_foreign_state_is_refused(sim: Sim) -> None:
    oauth = CanvasOAuth(options(sim))
    cancelled = callback_params(browser_answer(oauth.authorize_url("mine"), "cancel"))
    with pytest.raises(errors.AccessDenied):
        callback_code(cancelled, "mine")
    answered = callback_params(browser_answer(oauth.authorize_url("theirs")))
    with pytest.raises(errors.OAuthError, match="state mismatch"):
        callback_code(answered, "mine")
    with pytest.raises(errors.OAuthError, match="state mismatch"):
        callback_code({"code": answered["code"]}, "mine")
    with pytest.raises(errors.OAuthError, match="state mismatch"):
        callback_code({"code": answered["code"], "state": "mïne"}, "mine")


async def test_a_code_is_exchanged_once(sim: Sim) -> None:
    oauth = CanvasOAuth(options(sim))
    code = code_from_browser(oauth)
    await oauth.exchange(code)
    with pytest.raises(errors.OAuthError) as info:
        await oauth.exchange(code)
    assert not isinstance(info.value, errors.ReconnectNeeded)
    assert info.value.error == "invalid_grant" and info.value.status is None
    assert "invalid_grant" in str(info.value) and "POST /login/oauth2/token" in str(info.value)


async def test_wrong_secret_names_invalid_client(sim: Sim) -> None:
    good = CanvasOAuth(options(sim))
    bad = CanvasOAuth(options(sim, client_secret="not-the-secret"))
    with pytest.raises(errors.OAuthError) as info:
        await bad.exchange(code_from_browser(good))
    assert info.value.error == "invalid_client"
    assert "not-the-secret" not in str(info.value)


async def test_expiry_on_the_sim_clock_refreshes_once_and_retries_the_read(sim: Sim) -> None:
    oauth = CanvasOAuth(options(sim))
    tokens = await sign_in(oauth)
    stored: list[TokenSet] = []

    async def store(fresh: TokenSet) -> None:
        stored.append(fresh)

    auth = refreshing(oauth, tokens, on_refresh=store)
    sim.world.clock.advance(HOUR + 1)  # Canvas's hour is over; our clock does not know
    async with reader(sim, auth) as client:
        assert (await client.me()).name == "Alice Liddell"
    assert auth.refreshes == 1 and sim.world.stats.by_status[401] == 1
    assert stored == [auth.tokens] and auth.tokens.refresh_token == tokens.refresh_token
    assert auth.tokens.access_token != tokens.access_token
    old = httpx.get(
        f"{sim.url}/api/v1/users/self", headers={"Authorization": f"Bearer {tokens.access_token}"}
    )
    assert old.status_code == 401  # the previous access token died with the refresh


async def test_refresh_shortly_before_expiry_sends_no_dying_token(sim: Sim) -> None:
    oauth = CanvasOAuth(options(sim))
    tokens = await sign_in(oauth)
    assert tokens.expires_at is not None
    almost = tokens.expires_at - timedelta(minutes=2)
    auth = refreshing(oauth, tokens, now=lambda: almost)
    async with reader(sim, auth) as client:
        await client.me()
    assert auth.refreshes == 1 and sim.world.stats.by_status.get(401, 0) == 0


async def test_concurrent_reads_after_expiry_share_one_refresh(sim: Sim) -> None:
    oauth = CanvasOAuth(options(sim))
    auth = refreshing(oauth, await sign_in(oauth))
    sim.world.clock.advance(2 * HOUR)
    async with reader(sim, auth) as client:
        found = await asyncio.gather(
            client.me(),
            client.conferences(),
            client.appointment_groups("reservable"),
            client.appointment_groups("manageable"),
        )
    assert found[0].name == "Alice Liddell"
    assert auth.refreshes == 1  # a second refresh would have killed the first one's token
    assert sim.world.oauth.grants[0].refreshes == 1


async def test_a_write_is_not_resent_but_the_token_is_renewed(sim: Sim) -> None:
    oauth = CanvasOAuth(options(sim))
    auth = refreshing(oauth, await sign_in(oauth, "Carol Danvers"))
    slot = next(s.id for s in sim.world.slots.values() if s.group_id == 1 and s.id != 1001)
    sim.world.clock.advance(HOUR + 1)
    async with reader(sim, auth) as client:
        with pytest.raises(errors.InvalidToken):
            await client.reserve(slot)
        assert auth.refreshes == 1
        assert sim.world.stats.by_route["POST /api/v1/calendar_events/:id/reservations"] == 1
        assert (await client.me()).name == "Carol Danvers"


async def test_revoke_then_refresh_is_reconnect_needed_and_never_loops(sim: Sim) -> None:
    oauth = CanvasOAuth(options(sim))
    tokens = await sign_in(oauth)
    await oauth.revoke(tokens)
    assert sim.world.oauth.grants == []
    with pytest.raises(errors.ReconnectNeeded) as info:
        await oauth.refresh(tokens)
    assert info.value.error == "invalid_grant" and isinstance(info.value, errors.CanvasAuthError)
    auth = refreshing(oauth, tokens)
    async with reader(sim, auth) as client:
        with pytest.raises(errors.ReconnectNeeded):
            await client.me()
        sent = sim.world.stats.total
        with pytest.raises(errors.ReconnectNeeded):
            await client.conferences()
    assert sim.world.stats.total == sent  # remembered: Canvas is not asked again
    await oauth.revoke(tokens)  # revoking twice is fine


async def test_revoke_with_an_expired_access_token_still_deletes_the_grant(sim: Sim) -> None:
    oauth = CanvasOAuth(options(sim))
    tokens = await sign_in(oauth)
    sim.world.clock.advance(HOUR + 1)
    await oauth.revoke(tokens)
    assert sim.world.oauth.grants == []


async def test_scope_not_granted_is_a_permission_error_not_a_refresh(sim: Sim) -> None:
    granted = ("url:GET|/api/v1/users/:id",)
    sim.world.oauth.keys[SAMPLE_CLIENT_ID].scopes = [*granted, "url:GET|/api/v1/conferences"]
    oauth = CanvasOAuth(options(sim, scopes=granted))
    auth = refreshing(oauth, await sign_in(oauth))
    async with reader(sim, auth) as client:
        assert (await client.me()).name == "Alice Liddell"
        with pytest.raises(errors.InsufficientScopes):
            await client.conferences()
    assert auth.refreshes == 0


async def test_canvas_down_is_transient(sim: Sim) -> None:
    oauth = CanvasOAuth(options(sim, canvas_url="http://127.0.0.1:9"))
    with pytest.raises(errors.CanvasUnavailable):
        await oauth.exchange("whatever")


async def test_no_token_or_secret_in_logs_or_errors(
    sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    oauth = CanvasOAuth(options(sim))
    code = code_from_browser(oauth)  # the browser's own requests are not calbridge's logs
    caplog.set_level(logging.DEBUG)  # everything calbridge, httpx and httpcore log from here
    tokens = await oauth.exchange(code)
    texts: list[str] = [repr(tokens), repr(oauth), repr(oauth.options)]
    auth = refreshing(oauth, tokens)
    sim.world.clock.advance(HOUR + 1)
    async with reader(sim, auth) as client:
        await client.me()
    texts.append(repr(auth))
    failures = [
        oauth.exchange(code),  # used code
        CanvasOAuth(options(sim, client_secret=SAMPLE_CLIENT_SECRET + "x")).refresh(auth.tokens),
    ]
    for attempt in failures:
        with pytest.raises(errors.OAuthError) as info:
            await attempt
        texts += [str(info.value), repr(info.value)]
    await oauth.revoke(auth.tokens)
    with pytest.raises(errors.ReconnectNeeded) as dead:
        await oauth.refresh(auth.tokens)
    texts += [str(dead.value), repr(dead.value)]
    secrets = {
        tokens.access_token,
        auth.tokens.access_token,
        str(tokens.refresh_token),
        SAMPLE_CLIENT_SECRET,
        code,
    }
    everything = caplog.text + "\n".join(texts)
    assert "Canvas sign-in completed for user 3" in caplog.text
    for secret in secrets:
        assert secret not in everything


async def test_a_key_enforcing_scopes_refuses_a_client_asking_for_none(sim: Sim) -> None:
    sim.world.oauth.keys[SAMPLE_CLIENT_ID].scopes = ["url:GET|/api/v1/users/:id"]
    oauth = CanvasOAuth(options(sim))  # no scopes configured
    redirect = httpx.get(oauth.authorize_url("s"))  # Canvas sends the browser straight back
    assert redirect.status_code == 302
    answered = callback_params(redirect.headers["location"])
    with pytest.raises(errors.OAuthError) as info:
        callback_code(answered, "s")
    assert info.value.error == "invalid_scope" and not isinstance(info.value, errors.AccessDenied)
