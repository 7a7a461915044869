"""Signing in against the simulator the way a browser does: authorize page, form, redirect."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import httpx

from bridge.canvas.oauth import CanvasOAuth, OAuthOptions, callback_code
from bridge.model.tokens import TokenSet
from bridge.simulator.sample import SAMPLE_CLIENT_ID, SAMPLE_CLIENT_SECRET
from tests.helpers.sim import Sim

REDIRECT = "http://127.0.0.1:8080/oauth/callback"


def options(sim: Sim, **over: object) -> OAuthOptions:
    fields: dict[str, object] = {
        "canvas_url": sim.url,
        "client_id": SAMPLE_CLIENT_ID,
        "client_secret": SAMPLE_CLIENT_SECRET,
        "redirect_uri": REDIRECT,
        "scopes": (),
        "purpose": "calbridge calendars",
        "timeout": 10.0,
        **over,
    }
    return OAuthOptions(**fields)  # type: ignore[arg-type]


def browser_answer(url: str, decision: str = "authorize", user: str = "Alice Liddell") -> str:
    """Open the authorize URL, pick ``user``, press the button; the redirect's Location."""
    page = httpx.get(url)
    assert page.status_code == 200, page.text
    request_id = re.search(r'name="request" value="([^"]+)"', page.text)
    user_id = re.search(rf'value="(\d+)"[^>]*> {re.escape(user)}', page.text)
    assert request_id and user_id, page.text
    base = f"{urlsplit(url).scheme}://{urlsplit(url).netloc}"
    answer = httpx.post(
        f"{base}/login/oauth2/accept",
        data={"request": request_id[1], "decision": decision, "user_id": user_id[1]},
    )
    assert answer.status_code == 302
    return str(answer.headers["location"])


def callback_params(location: str) -> dict[str, str]:
    assert location.startswith(REDIRECT + "?"), location
    return dict(parse_qsl(urlsplit(location).query))


def code_from_browser(oauth: CanvasOAuth, state: str = "s-1", user: str = "Alice Liddell") -> str:
    location = browser_answer(oauth.authorize_url(state), user=user)
    return callback_code(callback_params(location), state)


async def sign_in(oauth: CanvasOAuth, user: str = "Alice Liddell") -> TokenSet:
    return await oauth.exchange(code_from_browser(oauth, user=user))
