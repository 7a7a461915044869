"""The simulator's OAuth2 endpoints answer as Canvas does (canvas-oauth.md), over raw HTTP."""

from __future__ import annotations

import re
import subprocess
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bridge.canvas.scopes import required_scopes
from bridge.simulator.sample import SAMPLE_CLIENT_ID, SAMPLE_CLIENT_SECRET
from tests.helpers.cli import CONSOLE_SCRIPT, calbridge, clean_env
from tests.helpers.sim import Sim

REDIRECT = "http://127.0.0.1:8080/oauth/callback"
SCOPES = ["url:GET|/api/v1/users/:id", "url:GET|/api/v1/conferences"]


def auth_params(**over: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "client_id": SAMPLE_CLIENT_ID,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "state": "st-123",
        **over,
    }
    return {k: v for k, v in params.items() if v is not None}


def query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    return {k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()}


def page_and_decide(sim: Sim, decision: str, user: str = "Alice Liddell", **over: str) -> str:
    """Open the authorize page, pick ``user`` and press a button; the redirect's Location."""
    page = httpx.get(f"{sim.url}/login/oauth2/auth", params=auth_params(**over))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<button" in page.text and "Authorize" in page.text and "Cancel" in page.text
    request_id = re.search(r'name="request" value="([^"]+)"', page.text)
    user_id = re.search(rf'value="(\d+)"[^>]*> {re.escape(user)}', page.text)
    assert request_id and user_id, page.text
    form = {"request": request_id[1], "decision": decision, "user_id": user_id[1]}
    answer = httpx.post(f"{sim.url}/login/oauth2/accept", data=form)
    assert answer.status_code == 302
    return str(answer.headers["location"])


def code_for(sim: Sim, user: str = "Alice Liddell", **over: str) -> str:
    location = page_and_decide(sim, "authorize", user, **over)
    assert location.startswith(REDIRECT + "?")
    params = parse_qs(urlsplit(location).query)
    assert params["state"] == ["st-123"]
    return params["code"][0]


def token_post(sim: Sim, **fields: str) -> httpx.Response:
    form = {"client_id": SAMPLE_CLIENT_ID, "client_secret": SAMPLE_CLIENT_SECRET, **fields}
    return httpx.post(f"{sim.url}/login/oauth2/token", data=form)


def exchange(sim: Sim, code: str, redirect_uri: str = REDIRECT) -> httpx.Response:
    return token_post(sim, grant_type="authorization_code", code=code, redirect_uri=redirect_uri)


def me(sim: Sim, token: str) -> httpx.Response:
    return httpx.get(f"{sim.url}/api/v1/users/self", headers={"Authorization": f"Bearer {token}"})


def enforce(sim: Sim, scopes: list[str]) -> None:
    r = httpx.post(
        f"{sim.url}/_sim/oauth",
        json={
            "client_id": SAMPLE_CLIENT_ID,
            "secret": SAMPLE_CLIENT_SECRET,
            "redirect_uris": ["http://127.0.0.1"],
            "scopes": scopes,
        },
    )
    assert r.status_code == 200


# --- the authorize step ---------------------------------------------------------------------


def test_authorize_then_exchange_answers_like_the_doc(sim: Sim) -> None:
    body = exchange(sim, code_for(sim)).json()
    assert set(body) == {"access_token", "token_type", "user", "refresh_token", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["user"]["id"] == 3 and body["user"]["name"] == "Alice Liddell"
    assert {"global_id", "effective_locale"} <= set(body["user"])  # more than id and name
    profile = me(sim, body["access_token"])
    assert profile.status_code == 200 and profile.json()["name"] == "Alice Liddell"


def test_cancel_redirects_with_access_denied_and_state(sim: Sim) -> None:
    location = page_and_decide(sim, "cancel")
    assert parse_qs(urlsplit(location).query) == {"error": ["access_denied"], "state": ["st-123"]}


def test_unknown_client_is_401_json_and_never_redirects(sim: Sim) -> None:
    r = httpx.get(f"{sim.url}/login/oauth2/auth", params=auth_params(client_id="999"))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert "location" not in r.headers


@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("http://127.0.0.1:9999/oauth/callback", True),  # the port is not compared
        ("http://127.0.0.1/elsewhere", True),  # nor the path
        ("https://127.0.0.1/oauth/callback", False),  # the scheme is
        ("http://evil.example/oauth/callback", False),
        ("http://127.0.0.1.evil.example/cb", False),
        (None, False),
    ],
)
def test_redirect_uri_must_match_the_key(sim: Sim, uri: str | None, allowed: bool) -> None:
    r = httpx.get(f"{sim.url}/login/oauth2/auth", params=auth_params(redirect_uri=uri))
    if allowed:
        assert r.status_code == 200
    else:
        assert r.status_code == 400 and "location" not in r.headers
        assert r.json() == {
            "error": "invalid_request",
            "error_description": "redirect_uri does not match client settings",
        }


def test_subdomains_of_a_registered_host_are_allowed(sim: Sim) -> None:
    sim.world.oauth.keys[SAMPLE_CLIENT_ID].redirect_uris = ["https://uni.example"]
    ok = auth_params(redirect_uri="https://calendar.uni.example:8443/oauth/callback")
    assert httpx.get(f"{sim.url}/login/oauth2/auth", params=ok).status_code == 200


def test_unsupported_response_type_redirects_back(sim: Sim) -> None:
    r = httpx.get(f"{sim.url}/login/oauth2/auth", params=auth_params(response_type="token"))
    assert query(r)["error"] == "unsupported_response_type" and query(r)["state"] == "st-123"


def test_a_key_enforcing_scopes_needs_a_scope(sim: Sim) -> None:
    enforce(sim, SCOPES)
    r = httpx.get(f"{sim.url}/login/oauth2/auth", params=auth_params())
    assert query(r)["error"] == "invalid_scope"
    beyond = auth_params(scope="url:GET|/api/v1/users/:id url:GET|/api/v1/courses")
    assert query(httpx.get(f"{sim.url}/login/oauth2/auth", params=beyond))["error"] == (
        "invalid_scope"
    )
    page = httpx.get(f"{sim.url}/login/oauth2/auth", params=auth_params(scope=" ".join(SCOPES)))
    assert page.status_code == 200 and "url:GET|/api/v1/conferences" in page.text


def test_authorize_form_is_good_once(sim: Sim) -> None:
    page = httpx.get(f"{sim.url}/login/oauth2/auth", params=auth_params())
    request_id = re.search(r'name="request" value="([^"]+)"', page.text)
    assert request_id
    form = {"request": request_id[1], "decision": "authorize", "user_id": "3"}
    assert httpx.post(f"{sim.url}/login/oauth2/accept", data=form).status_code == 302
    again = httpx.post(f"{sim.url}/login/oauth2/accept", data=form)
    assert again.status_code == 400 and "location" not in again.headers


# --- the token endpoint ---------------------------------------------------------------------


def test_codes_are_usable_once(sim: Sim) -> None:
    code = code_for(sim)
    assert exchange(sim, code).status_code == 200
    again = exchange(sim, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_the_redirect_uri_must_be_the_one_of_step_one(sim: Sim) -> None:
    r = exchange(sim, code_for(sim), redirect_uri="http://127.0.0.1:8080/other")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_wrong_client_secret_is_invalid_client(sim: Sim) -> None:
    r = token_post(
        sim,
        client_secret="nope",
        grant_type="authorization_code",
        code=code_for(sim),
        redirect_uri=REDIRECT,
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert token_post(sim, grant_type="password").json()["error"] == "unsupported_grant_type"


def test_tokens_expire_after_an_hour_of_the_simulators_clock(sim: Sim) -> None:
    tokens = exchange(sim, code_for(sim)).json()
    httpx.post(f"{sim.url}/_sim/clock", json={"advance": 3599})
    assert me(sim, tokens["access_token"]).status_code == 200
    httpx.post(f"{sim.url}/_sim/clock", json={"advance": 1})
    expired = me(sim, tokens["access_token"])
    assert expired.status_code == 401 and expired.json() == {
        "errors": [{"message": "Invalid access token."}]
    }
    assert expired.headers["www-authenticate"] == 'Bearer realm="canvas-lms"'


def test_refresh_keeps_the_refresh_token_and_kills_the_old_access_token(sim: Sim) -> None:
    first = exchange(sim, code_for(sim)).json()
    refreshed = token_post(
        sim, grant_type="refresh_token", refresh_token=first["refresh_token"], redirect_uri=REDIRECT
    )
    body = refreshed.json()
    assert refreshed.status_code == 200
    assert set(body) == {"access_token", "token_type", "user", "expires_in"}  # no refresh token
    assert body["access_token"] != first["access_token"]
    old = me(sim, first["access_token"])
    assert old.status_code == 401 and "www-authenticate" in old.headers
    assert me(sim, body["access_token"]).status_code == 200
    # the same refresh token, again and again
    second = token_post(sim, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert second.status_code == 200


def test_revoke_deletes_the_grant(sim: Sim) -> None:
    tokens = exchange(sim, code_for(sim)).json()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    r = httpx.delete(f"{sim.url}/login/oauth2/token", headers=auth)
    assert r.status_code == 200
    gone = me(sim, tokens["access_token"])
    assert gone.status_code == 401 and "www-authenticate" in gone.headers
    dead = token_post(sim, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
    assert httpx.delete(f"{sim.url}/login/oauth2/token", headers=auth).status_code == 401


def test_user_deleting_the_token_or_key_turned_off_kills_refresh(sim: Sim) -> None:
    tokens = exchange(sim, code_for(sim)).json()
    assert httpx.delete(f"{sim.url}/_sim/oauth/users/3/tokens").json() == {"deleted": 1}
    dead = token_post(sim, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert dead.json()["error"] == "invalid_grant"
    again = exchange(sim, code_for(sim)).json()
    httpx.post(f"{sim.url}/_sim/oauth/keys/{SAMPLE_CLIENT_ID}/deactivate")
    assert me(sim, again["access_token"]).status_code == 401


def test_scopes_not_granted_are_401_without_www_authenticate(sim: Sim) -> None:
    enforce(sim, [*SCOPES, "url:GET|/api/v1/appointment_groups"])
    tokens = exchange(sim, code_for(sim, scope=" ".join(SCOPES))).json()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert httpx.get(f"{sim.url}/api/v1/conferences", headers=auth).status_code == 200
    refused = httpx.get(f"{sim.url}/api/v1/appointment_groups", headers=auth)
    assert refused.status_code == 401 and "www-authenticate" not in refused.headers
    assert refused.json() == {"errors": [{"message": "Insufficient scopes on access token."}]}


def test_personal_access_tokens_are_unchanged_beside_oauth(sim: Sim) -> None:
    exchange(sim, code_for(sim))  # an OAuth grant exists
    assert me(sim, sim.tokens["bob"]).json()["name"] == "Bob Dylan"
    unknown = me(sim, "nope")
    assert unknown.status_code == 401 and unknown.json() == {
        "errors": [{"message": "Invalid access token."}]
    }
    state = httpx.get(f"{sim.url}/_sim/oauth").json()
    assert state["grants"][0]["user_id"] == 3
    assert SAMPLE_CLIENT_SECRET not in str(state) and "access_token" not in str(state)


def test_simulator_command_configures_the_sample_key() -> None:
    bad = calbridge("simulator", "--key-scopes", "GET /api/v1/users/self")
    assert bad.returncode == 2 and "--key-scopes" in bad.stderr and "url:GET|" in bad.stderr
    bad_uri = calbridge("simulator", "--redirect-uri", "calbridge.example")
    assert bad_uri.returncode == 2 and "--redirect-uri" in bad_uri.stderr
    scopes = "\n".join(required_scopes())
    args = ["--port", "0", "--control", "--key-scopes", scopes]
    args += ["--redirect-uri", "https://calbridge.example"]
    proc = subprocess.Popen(
        [CONSOLE_SCRIPT, "simulator", *args], stdout=subprocess.PIPE, text=True, env=clean_env()
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = re.search(r"on (http://127\.0\.0\.1:\d+)", first)
        assert url, first
        keys = httpx.get(f"{url[1]}/_sim/oauth").json()["keys"]
        assert keys == [
            {
                "client_id": SAMPLE_CLIENT_ID,
                "redirect_uris": ["https://calbridge.example"],
                "scopes": list(required_scopes()),
                "active": True,
            }
        ]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_revoked_personal_token_does_not_touch_the_same_users_oauth_grant(sim: Sim) -> None:
    tokens = exchange(sim, code_for(sim)).json()
    httpx.post(f"{sim.url}/_sim/tokens/{sim.tokens['alice']}", json={"state": "revoked"})
    assert me(sim, sim.tokens["alice"]).json() == {"errors": [{"message": "Revoked access token."}]}
    assert me(sim, tokens["access_token"]).status_code == 200


def test_non_ascii_tokens_are_refused_not_crashed_on(sim: Sim) -> None:
    exchange(sim, code_for(sim))
    r = httpx.get(
        f"{sim.url}/api/v1/users/self", headers={"Authorization": "Bearer t\u00f6ken".encode()}
    )
    assert r.status_code == 401 and "www-authenticate" in r.headers
    dead = token_post(sim, grant_type="refresh_token", refresh_token="r\u00e9fresh")
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
