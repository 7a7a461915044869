"""Institution mode end to end, without the pages: a person connects by driving the simulator's
authorize form over HTTP and the result is stored through :meth:`People.connect`; the daemon
(`calbridge run`, a subprocess) syncs them beside a config-file account and serves their feed;
their token expires on the simulator's clock and is refreshed and stored encrypted; a token
deleted at Canvas marks them reconnect-needed with the last data kept; `calbridge users` and
`calbridge keys` do what they say."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx

from bridge.canvas.oauth import callback_code
from bridge.config import load_config, state_vault
from bridge.daemon.people import People
from bridge.model.people import Person
from bridge.model.tokens import TokenSet
from bridge.simulator.sample import SAMPLE_CLIENT_ID, SAMPLE_CLIENT_SECRET
from bridge.state import open_state
from bridge.state.vault import generate_key
from tests.helpers.daemon import Running, cli, wait_feed
from tests.helpers.oauth_flow import browser_answer
from tests.helpers.portal import write_config as portal_config
from tests.helpers.servers import free_port
from tests.helpers.sim import Sim
from tests.helpers.validators import assert_valid

HOUR = 3600


def write_config(tmp: Path, sim: Sim, port: int, key: str) -> Path:
    """Institution mode (the pages' config) beside one config-file account, the teacher."""
    path = portal_config(tmp, sim, port, key)
    (tmp / "teacher.token").write_text(sim.tokens["teacher"])
    path.write_text(
        path.read_text()
        + f"""
[[accounts]]
id = "teacher"
canvas_url = "{sim.url}"
token_file = "{tmp / "teacher.token"}"
poll_interval = "1h"
[[feeds]]
id = "teacher"
account = "teacher"
include = ["managed_slots"]
"""
    )
    return path


def sign_in(config: Path, user: str) -> Person:
    """What the callback page will do: the authorize form driven over HTTP, the code
    exchanged, the tokens stored through People.connect."""
    settings = load_config(config)
    state = open_state(settings.state.database_url(), state_vault(settings.state))
    try:
        people = People(state, settings)
        oauth = people.oauth()
        location = browser_answer(oauth.authorize_url("state-1"), user=user)
        assert location.startswith(f"{settings.http.base_url}/oauth/callback?"), location
        code = callback_code(dict(parse_qsl(urlsplit(location).query)), "state-1")
        return people.connect(asyncio.run(oauth.exchange(code)))
    finally:
        state.close()


def stored_tokens(config: Path, person: Person) -> TokenSet:
    settings = load_config(config)
    state = open_state(settings.state.database_url(), state_vault(settings.state))
    try:
        return state.people.tokens(person.id)
    finally:
        state.close()


def raw_state(tmp: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp.iterdir() if p.name.startswith("state.sqlite3"))


def users(config: Path, *args: str) -> object:
    out = cli("users", *args, "-c", str(config), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def feeds_json(config: Path) -> list[dict[str, str]]:
    out = cli("feeds", "-c", str(config), "--json")
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, str]] = json.loads(out.stdout)
    return rows


def eventually(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("the daemon did not follow within the timeout")


def test_a_connected_person_is_synced_refreshed_and_kept_after_revocation(
    live_sim: Sim, tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    sim = live_sim
    port = free_port()
    config = write_config(tmp_path, sim, port, generate_key())
    daemon = start_daemon(config, port)
    alice = sign_in(config, "Alice Liddell")
    assert alice.account_id == "u1" and [f.include for f in alice.feeds] == [
        ("conferences", "reservations")
    ]
    [row] = users(config, "list")  # type: ignore[misc]
    assert (row["id"], row["name"], row["status"]) == ("u1", "Alice Liddell", "connected")
    url = row["feeds"][0]["url"]
    assert url.startswith(f"http://127.0.0.1:{port}/feeds/u1.f1/") and url.endswith(".ics")
    # the daemon picks the new person up within seconds, polls them and serves their feed
    feed = wait_feed(url)
    assert assert_valid(feed.text) > 3
    assert "Question about recursion depth" in feed.text.replace("\r\n ", "")
    # `calbridge feeds` lists the person's feed beside the config's; rotating its secret
    # makes the old URL 404 within seconds
    listed = {row["id"]: row["https"] for row in feeds_json(config)}
    assert listed["u1.f1"] == url and "teacher" in listed
    out = cli("feeds", "rotate-secret", "u1.f1", "-c", str(config))
    assert out.returncode == 0, out.stderr
    new_url = {row["id"]: row["https"] for row in feeds_json(config)}["u1.f1"]
    assert new_url != url
    eventually(lambda: httpx.get(url).status_code == 404)
    url = new_url
    wait_feed(url)
    first = stored_tokens(config, alice)
    assert first.refresh_token
    raw = raw_state(tmp_path)
    assert b"Alice Liddell" in raw
    assert first.access_token.encode() not in raw and first.refresh_token.encode() not in raw

    # an hour later at Canvas: the access token is dead; one sync refreshes and stores it
    sim.world.clock.advance(HOUR + 60)
    out = cli("sync", "-c", str(config), "--account", "u1", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    second = stored_tokens(config, alice)
    assert second.access_token != first.access_token
    assert second.refresh_token == first.refresh_token  # Canvas keeps the refresh token
    assert second.access_token.encode() not in raw_state(tmp_path)
    for secret in (first.access_token, second.access_token, first.refresh_token):
        assert secret not in out.stdout + out.stderr

    # the person deletes the token on their Canvas profile: reconnect needed, data kept
    before = httpx.get(url).content
    gone = httpx.delete(f"{sim.url}/_sim/oauth/users/{alice.canvas_user_id}/tokens")
    assert gone.status_code == 200
    out = cli("sync", "-c", str(config), "--account", "u1", "--json")
    assert out.returncode != 0
    assert "connect again" in out.stdout or "refused" in out.stdout, out.stdout
    shown = users(config, "show", "u1")
    assert shown["status"] == "reconnect_needed"  # type: ignore[index]
    assert "refresh token was refused" in shown["last_error"]  # type: ignore[index]
    eventually(
        lambda: (
            'calbridge_people{state="reconnect_needed"} 1.0'
            in httpx.get(f"{daemon.admin_url}/metrics").text
        )
    )
    assert httpx.get(url).content == before  # still served, with the last good data
    # out of the schedule: nothing retries, and sync no longer knows the account
    out = cli("sync", "-c", str(config), "--account", "u1")
    assert out.returncode == 2 and "no account with id u1" in out.stderr

    # connecting again brings the same person and feed back
    again = sign_in(config, "Alice Liddell")
    assert again.id == alice.id and [f.feed_id for f in again.feeds] == ["u1.f1"]
    assert url.endswith(f"/{again.feeds[0].secret}.ics")  # the same (rotated) feed URL
    assert users(config, "show", "1")["status"] == "connected"  # type: ignore[index]

    # disable: not served; enable: served again after a poll
    assert "disabled" in cli("users", "disable", "u1", "-c", str(config)).stdout
    eventually(lambda: httpx.get(url).status_code == 404)
    assert "enabled" in cli("users", "enable", "u1", "-c", str(config)).stdout
    wait_feed(url)

    # remove: revoked at Canvas, everything of theirs deleted, the feed URL 404
    live = stored_tokens(config, alice)
    out = cli("users", "remove", "u1", "-c", str(config))
    assert out.returncode == 0, out.stderr
    assert "u1 (Alice Liddell) removed: token revoked at Canvas; 1 feeds and 0 calendars" in (
        out.stdout
    )
    me = httpx.get(
        f"{sim.url}/api/v1/users/self",
        headers={"Authorization": f"Bearer {live.access_token}"},
    )
    assert me.status_code == 401 and "www-authenticate" in me.headers
    eventually(lambda: httpx.get(url).status_code == 404)
    out = cli("users", "show", "u1", "-c", str(config))
    assert out.returncode != 0 and "no connected person has id u1" in out.stderr
    assert users(config, "list") == []
    assert daemon.stop() == 0
    _, stderr = daemon.proc.communicate()
    for secret in (first.access_token, second.access_token, live.access_token):
        assert secret not in stderr
    assert first.refresh_token not in stderr


def test_keys_rotate_and_generate_over_the_cli(live_sim: Sim, tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    config = write_config(tmp_path, live_sim, free_port(), old)
    alice = sign_in(config, "Alice Liddell")
    tokens = stored_tokens(config, alice)
    generated = cli("keys", "generate")
    assert generated.returncode == 0 and len(generated.stdout.strip()) == 44
    (tmp_path / "state.keys").write_text(f"# new first, old after\n{new}\n{old}\n")
    out = cli("keys", "rotate", "-c", str(config))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("re-encrypted 2 stored secrets with the first of 2 keys")
    (tmp_path / "state.keys").write_text(new + "\n")
    assert stored_tokens(config, alice) == tokens
    # the old key alone no longer opens anything: a clear error naming the key file
    (tmp_path / "state.keys").write_text(old + "\n")
    out = cli("sync", "-c", str(config), "--account", "u1")
    assert out.returncode != 0
    assert "cannot decrypt the Canvas token of person 1" in out.stderr + out.stdout
    assert str(tmp_path / "state.keys") in out.stderr + out.stdout
    assert tokens.access_token not in out.stderr + out.stdout


def test_users_cli_refuses_bad_and_unknown_ids(live_sim: Sim, tmp_path: Path) -> None:
    config = write_config(tmp_path, live_sim, free_port(), generate_key())
    bad = cli("users", "disable", "alice", "-c", str(config))
    assert bad.returncode == 2 and "Usage: calbridge users disable" in bad.stderr
    assert "'alice' is not a person's id" in bad.stderr
    for command in ("show", "disable", "enable", "remove"):
        out = cli("users", command, "u42", "-c", str(config))
        assert out.returncode == 2, (command, out.stderr)
        assert "no connected person has id u42" in out.stderr
    listed = cli("users", "list", "-c", str(config))
    assert listed.returncode == 0 and "nobody has connected yet" in listed.stdout


def test_a_persons_caldav_calendar_is_synced_with_the_stored_password(
    live_sim: Sim, tmp_path: Path
) -> None:
    from bridge.model.people import NewTarget
    from tests.helpers.dav import server_uids
    from tests.helpers.servers import radicale

    config = write_config(tmp_path, live_sim, free_port(), generate_key())
    alice = sign_in(config, "Alice Liddell")
    with radicale(tmp_path / "radicale") as server:
        settings = load_config(config)
        state = open_state(settings.state.database_url(), state_vault(settings.state))
        try:
            target = state.people.add_target(
                alice.id,
                NewTarget(
                    server.url,
                    server.username,
                    server.password,
                    "Canvas",
                    ("conferences", "reservations"),
                    "Europe/Berlin",
                    True,
                ),
            )
        finally:
            state.close()
        out = cli("sync", "-c", str(config), "--account", "u1", "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        [report] = json.loads(out.stdout)["accounts"][0]["targets"]
        assert report["target"] == target.target_id == "u1.c1" and report["created"] >= 2
        state = open_state(settings.state.database_url())
        try:
            collection = state.caldav.collection("u1.c1")
        finally:
            state.close()
        assert collection is not None
        uids = server_uids(server, collection.url)
        assert len(uids) == report["created"]
        assert server.password.encode() not in raw_state(tmp_path)
        [row] = users(config, "list")  # type: ignore[misc]
        assert row["targets"] == [
            {
                "id": "u1.c1",
                "url": server.url,
                "username": server.username,
                "calendar": "Canvas",
                "include": ["conferences", "reservations"],
                "writeback": True,
            }
        ]
        assert server.password not in cli("users", "list", "-c", str(config)).stdout


def test_remove_deletes_nothing_while_canvas_cannot_revoke(live_sim: Sim, tmp_path: Path) -> None:
    config = write_config(tmp_path, live_sim, free_port(), generate_key())
    sign_in(config, "Bob Dylan")
    text = config.read_text()
    config.write_text(
        text.replace(
            f'canvas_url = "{live_sim.url}"\nclient_id',
            (f'canvas_url = "http://127.0.0.1:{free_port()}"\nclient_id'),
        )
    )
    out = cli("users", "remove", "u1", "-c", str(config))
    assert out.returncode == 4, out.stderr  # Canvas unreachable: transient, run it again
    assert (
        "u1 was not removed (nothing deleted)" in out.stderr and "Canvas unreachable" in out.stderr
    )
    [row] = users(config, "list")  # type: ignore[misc]
    assert (row["id"], row["name"], len(row["feeds"])) == ("u1", "Bob Dylan", 1)
    config.write_text(text)
    assert cli("users", "remove", "u1", "-c", str(config)).returncode == 0
    assert users(config, "list") == []


def test_check_asks_canvas_about_the_developer_key(live_sim: Sim, tmp_path: Path) -> None:
    config = write_config(tmp_path, live_sim, free_port(), generate_key())
    good = cli("check", "-c", str(config))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "keys: ok: 1 encryption keys (state.encryption_key_file" in good.stdout
    assert f"oauth: ok: developer key {SAMPLE_CLIENT_ID} accepts the redirect URI" in good.stdout
    assert not (tmp_path / "state.sqlite3").exists()  # check creates nothing
    text = config.read_text()
    config.write_text(text.replace(f'client_id = "{SAMPLE_CLIENT_ID}"', 'client_id = "999"'))
    out = cli("check", "-c", str(config), "--json")
    assert out.returncode == 1
    [keys, oauth] = json.loads(out.stdout)["institution"]
    assert keys["ok"] and not oauth["ok"]
    assert "Canvas does not know client_id 999" in oauth["detail"]
    config.write_text(
        text.replace("[http]\n", '[http]\npublic_url = "https://calendar.example.edu"\n')
    )
    out = cli("check", "-c", str(config))
    assert out.returncode == 1
    assert (
        "oauth: FAILED: GET /login/oauth2/auth: the key does not accept the redirect URI "
        "https://calendar.example.edu/oauth/callback" in out.stdout
    )
    config.write_text(text)
    (tmp_path / "state.keys").write_text("")
    out = cli("check", "-c", str(config))
    assert out.returncode == 1 and "keys: FAILED" in out.stdout
    assert SAMPLE_CLIENT_SECRET not in out.stdout + out.stderr
