"""Institution mode's personal pages (PAGES.md) on a running daemon (`calbridge run`, a
subprocess), with httpx as the browser going through Canvas's sign-in on the simulator over
HTTP, and Radicale as a person's CalDAV calendar."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from bridge.config import load_config, state_vault
from bridge.state import open_state
from bridge.state.vault import generate_key
from tests.helpers.daemon import Running, wait_feed
from tests.helpers.dav import auth, server_uids
from tests.helpers.portal import Browser, feed_db_id, feed_url, parse, write_config
from tests.helpers.servers import free_port, radicale
from tests.helpers.sim import Sim
from tests.helpers.validators import assert_valid

FOREIGN_EVENT = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//someone else//EN\r\nBEGIN:VEVENT\r\n"
    "UID:dentist@example.org\r\nDTSTAMP:20260301T080000Z\r\nDTSTART:20260310T090000Z\r\n"
    "DTEND:20260310T100000Z\r\nSUMMARY:Dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def eventually(check: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def people_in(config: Path) -> list[tuple[int, str, int]]:
    settings = load_config(config)
    state = open_state(settings.state.database_url(), state_vault(settings.state))
    try:
        return [(p.id, p.name, p.canvas_user_id) for p in state.people.all()]
    finally:
        state.close()


def secrets_of(config: Path) -> list[str]:
    """Every token and password the state store keeps for people, decrypted."""
    settings = load_config(config)
    state = open_state(settings.state.database_url(), state_vault(settings.state))
    try:
        found = []
        for person in state.people.all():
            tokens = state.people.tokens(person.id)
            found += [tokens.access_token, tokens.refresh_token or ""]
            found += [state.people.target_password(t.id) for t in person.targets]
        return [s for s in found if s]
    finally:
        state.close()


def raw_state(tmp: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp.iterdir() if p.name.startswith("state.sqlite3"))


@pytest.fixture
def daemon(
    live_sim: Sim, tmp_path: Path, start_daemon: Callable[..., Running]
) -> tuple[Running, Path, Path]:
    port = free_port()
    config = write_config(tmp_path, live_sim, port, generate_key())
    log = tmp_path / "daemon.log"
    return start_daemon(config, port, log=log), config, log


def test_a_person_signs_in_edits_feeds_adds_a_calendar_and_disconnects(
    live_sim: Sim, tmp_path: Path, daemon: tuple[Running, Path, Path]
) -> None:
    running, config, log = daemon
    alice = Browser(running.url)
    pages: list[str] = []
    home = alice.page("/")
    assert home.one("a", id="connect").attrs["href"] == "/connect"
    assert not home.find_all("a", id="my-page")
    me = alice.sign_in("Alice Liddell")
    assert alice.page("/").one("a", id="my-page").attrs["href"] == "/me"
    assert me.one("h1").all_text == "Alice Liddell"
    assert "Connected" in me.one("p", id="status").all_text
    url = feed_url(me)
    assert url.startswith(f"{running.url}/feeds/u1.f1/") and url.endswith(".ics")
    feed = wait_feed(url)
    assert assert_valid(feed.text) > 0
    section = me.one("section", id=f"feed-{feed_db_id(me)}")
    assert {a.attrs.get("href", "")[:26] for a in section.find_all("a", class_="btn")} >= {
        "https://calendar.google.co",
        "https://outlook.live.com/c",
    }
    assert any(a.attrs["href"].startswith("webcal://") for a in section.find_all("a"))
    settings = section.one("form", class_="feed-settings")
    checked = {
        i.attrs["value"] for i in settings.find_all("input", name="include") if "checked" in i.attrs
    }
    assert checked == {"conferences", "reservations"}
    assert settings.find_all("select", name="timezone")
    pages.append(alice.get("/me").text)

    # the include/timezone edit changes the feed's body
    feed_id = feed_db_id(me)
    before = httpx.get(url).text
    r = alice.post(
        f"/me/feeds/{feed_id}", {"include": ["conferences"], "timezone": "Europe/Berlin"}
    )
    assert r.status_code == 303, r.text
    eventually(lambda: httpx.get(url).text != before, what="the feed follows the edit")
    edited = httpx.get(url).text
    assert "Europe/Berlin" in edited and assert_valid(edited) >= 0
    page = alice.page()
    zone = page.one("select", name="timezone").one("option", value="Europe/Berlin")
    assert "selected" in zone.attrs

    # CSRF: missing or wrong → 403, nothing changed
    for csrf in (None, "forged"):
        r = alice.post(f"/me/feeds/{feed_id}", {"include": ["reservations"]}, csrf=csrf)
        assert r.status_code == 403 and "nothing was changed" in r.text
        r = alice.post(f"/me/feeds/{feed_id}/rotate", {}, csrf=csrf)
        assert r.status_code == 403
        r = alice.post("/me/disconnect", {}, csrf=csrf)
        assert r.status_code == 403
    assert feed_url(alice.page()) == url
    assert httpx.get(url).status_code == 200

    # rotate: the old URL is 404 as soon as the page answers
    r = alice.post(f"/me/feeds/{feed_id}/rotate", {})
    assert r.status_code == 303
    assert httpx.get(url).status_code == 404
    new_url = feed_url(alice.page())
    assert new_url != url
    wait_feed(new_url)
    url = new_url

    # a bad time zone or no include: a clear error, nothing saved
    r = alice.post(f"/me/feeds/{feed_id}", {"include": ["conferences"], "timezone": "Mars/Olympus"})
    assert (
        r.status_code == 400
        and "unknown time zone" in parse(r.text).one("p", class_="error").all_text
    )
    r = alice.post(f"/me/feeds/{feed_id}", {"timezone": ""})
    assert r.status_code == 400 and "at least one" in r.text

    with radicale(tmp_path / "radicale", check_password=True) as server:
        # a wrong password: the live check says why, nothing is saved, fields kept but the password
        r = alice.post(
            "/me/calendars",
            {
                "url": server.url,
                "username": server.username,
                "password": "wrong-password-123",
                "calendar": "Canvas",
                "include": ["conferences", "reservations"],
                "writeback": "on",
            },
        )
        assert r.status_code == 400, r.text
        shown = parse(r.text)
        error = shown.one("form", id="add-calendar").one("p", class_="error").all_text
        assert "Calendar not added" in error and ("401" in error or "refused" in error.lower()), (
            error
        )
        assert "u1.c" not in error and "caldav" not in error, error  # no internal id
        form = shown.one("form", id="add-calendar")
        assert form.one("input", name="url").attrs["value"] == server.url
        assert form.one("input", name="username").attrs["value"] == server.username
        assert "value" not in form.one("input", name="password").attrs
        assert "wrong-password-123" not in r.text
        assert not alice.page().find_all("section", class_="calendar")

        # the right one: saved, and events arrive after a cycle
        r = alice.post(
            "/me/calendars",
            {
                "url": server.url,
                "username": server.username,
                "password": server.password,
                "calendar": "Canvas",
                "include": ["conferences", "reservations"],
                "writeback": "on",
            },
        )
        assert r.status_code == 303, r.text
        page = alice.page()
        [calendar] = page.find_all("section", class_="calendar")
        assert calendar.attrs["id"] == "calendar-1"
        assert server.url in calendar.all_text and server.password not in alice.get("/me").text
        collection = server.home + "canvas/"

        def arrived() -> bool:
            try:
                return len(server_uids(server, collection)) > 0
            except Exception:
                return False

        eventually(arrived, what="events in Radicale")

        def pushed() -> bool:  # the page says when, in the page's words (not ISO 8601)
            text = alice.page().one("section", id="calendar-1").all_text
            return re.search(r"Last pushed \d{4}-\d\d-\d\d \d\d:\d\d UTC", text) is not None

        eventually(pushed, what="the calendar's last push on the page")

        # Alice deletes a booking in her calendar: the next cycle cancels it in Canvas, and
        # her page lists the write-back
        settings = load_config(config)
        state = open_state(settings.state.database_url(), state_vault(settings.state))
        try:
            items = state.caldav.load("u1.c1")
        finally:
            state.close()
        booking = next(i for i in items.values() if i.uid.startswith("canvas-reservation-"))
        gone = httpx.delete(httpx.URL(collection).join(booking.href), auth=auth(server))
        assert gone.status_code in (200, 204), gone.text
        r = alice.post(f"/me/feeds/{feed_id}", {"include": ["conferences", "reservations"]})
        assert r.status_code == 303  # an edit runs the account's cycle at once

        def written_back() -> bool:
            rows = alice.page().one("section", id="writebacks").find_all("tr")
            return any("cancel reservation" in row.all_text for row in rows)

        eventually(written_back, what="the write-back on the page")
        [row] = [
            row
            for row in alice.page().one("section", id="writebacks").find_all("tr")
            if "cancel reservation" in row.all_text
        ]
        assert "applied" in row.all_text, row.all_text
        ours = set(server_uids(server, collection))
        assert booking.uid not in ours
        put = httpx.put(
            collection + "dentist.ics",
            content=FOREIGN_EVENT,
            auth=auth(server),
            headers={"content-type": "text/calendar"},
        )
        assert put.status_code in (201, 204), put.text
        pages.append(alice.get("/me").text)

        # a second person sees none of Alice's and can change none of it
        bob = Browser(running.url)
        bob_page = bob.sign_in("Bob Dylan")
        assert bob_page.one("h1").all_text == "Bob Dylan"
        assert url not in bob.get("/me").text and "calendar-1" not in bob.get("/me").text
        assert not bob_page.find_all("section", class_="calendar")
        bob_feed = feed_db_id(bob_page)
        assert bob_feed != feed_id
        for path, data in (
            (f"/me/feeds/{feed_id}", {"include": ["reservations"]}),
            (f"/me/feeds/{feed_id}/rotate", {}),
            ("/me/calendars/1/remove", {}),
        ):
            r = bob.post(path, data)
            assert r.status_code == 404, (path, r.status_code)
        assert feed_url(alice.page()) == url
        assert alice.page().find_all("section", class_="calendar")
        pages.append(bob.get("/me").text)
        bob.close()

        # every page so far: no token or password in clear
        stored = secrets_of(config)
        assert len(stored) >= 5  # two people's tokens, Alice's CalDAV password
        for html in pages:
            for secret in stored:
                assert secret not in html
        raw = raw_state(tmp_path)
        for secret in stored:
            assert secret.encode() not in raw

        # disconnect, removing calbridge's events: revoked at Canvas, feeds 404, the foreign
        # event stays
        [alice_user] = [user for _, name, user in people_in(config) if name == "Alice Liddell"]

        def alice_grants() -> list[object]:
            grants = httpx.get(f"{live_sim.url}/_sim/oauth").json()["grants"]
            return [g for g in grants if g["user_id"] == alice_user]

        assert alice_grants()
        r = alice.post("/me/disconnect", {"remove_events": "on"})
        assert r.status_code == 200, r.text
        done = parse(r.text)
        assert done.one("h1").all_text == "Disconnected"
        assert done.one("a", id="back").attrs["href"] == "/"
        assert f"{len(ours)} events removed" in r.text
        assert alice_grants() == []
        assert httpx.get(url).status_code == 404
        assert server_uids(server, collection) == ["dentist@example.org"]
        assert alice.get("/me").status_code == 303
        assert [name for _, name, _ in people_in(config)] == ["Bob Dylan"]

    text = log.read_text()
    assert "secret rotated by its owner" in text and "added by its owner" in text
    for secret in [*stored, "wrong-password-123"]:
        assert secret not in text
    assert "?code=" not in text and "state=" not in text  # sign-in answers are not logged
    alice.close()


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return parts._replace(query="&".join(f"{k}={v}" for k, v in query.items())).geturl()


def test_a_sign_in_that_cannot_be_finished_stores_nothing(
    daemon: tuple[Running, Path, Path],
) -> None:
    running, config, _ = daemon
    browser, other = Browser(running.url), Browser(running.url)
    # a state that is not this browser's: 400, and it is used up (the real answer is refused
    # afterwards too)
    answer = browser.authorize("Alice Liddell")
    r = browser.get(_with_query(answer, state="forged-state"))
    assert r.status_code == 400 and "does not belong" in r.text
    assert parse(r.text).one("a", id="connect").attrs["href"] == "/connect"
    assert browser.get(answer).status_code == 400
    # an answer meant for another browser
    theirs = other.authorize("Alice Liddell")
    browser.authorize("Alice Liddell")
    assert browser.get(theirs).status_code == 400
    # the person cancels at Canvas
    refused = browser.authorize("Alice Liddell", decision="cancel")
    assert "error=access_denied" in refused
    r = browser.get(refused)
    assert r.status_code == 403 and "You cancelled" in r.text
    assert parse(r.text).one("a", id="connect")
    # Canvas refuses the exchange (a code it never issued)
    r = browser.get(_with_query(browser.authorize("Alice Liddell"), code="not-a-code"))
    assert r.status_code == 502 and "nothing was stored" in r.text
    assert people_in(config) == []
    assert browser.get("/me").status_code == 303

    # a finished sign-in cannot be replayed, not even by the same browser
    answer = browser.authorize("Alice Liddell")
    assert browser.get(answer).status_code == 303
    assert browser.get(answer).status_code == 400
    assert other.get(answer).status_code == 400
    assert other.get("/me").status_code == 303  # the other browser is not signed in
    assert [name for _, name, _ in people_in(config)] == ["Alice Liddell"]

    # Canvas refused the refresh token (what the cycle records): the page says so, and offers
    # to reconnect
    settings = load_config(config)
    state = open_state(settings.state.database_url(), state_vault(settings.state))
    try:
        [(person_id, _, _)] = people_in(config)
        state.people.mark_reconnect_needed(person_id)
    finally:
        state.close()
    status = browser.page().one("p", id="status")
    assert "Reconnect needed" in status.all_text
    assert status.one("a", id="reconnect").attrs["href"] == "/connect"

    # the session cookie: signed, HttpOnly, SameSite=Lax, not Secure over http, bounded
    cookie = other.get("/connect").headers["set-cookie"].lower()
    assert cookie.startswith("calbridge_session=")
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    assert "max-age=604800" in cookie
    # signing out clears it (the form needs the CSRF token too)
    assert browser.post("/signout", {}, csrf=None).status_code == 403
    assert browser.get("/me").status_code == 200
    r = browser.post("/signout", {})
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert browser.get("/me").status_code == 303
    browser.close()
    other.close()


def test_sessions_expire_and_sign_in_is_rate_limited(
    live_sim: Sim, tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        live_sim,
        port,
        generate_key(),
        oauth='session_lifetime = "3s"\nsign_in_per_minute = 6',
    )
    running = start_daemon(config, port)
    browser = Browser(running.url)
    browser.sign_in("Bob Dylan")
    assert "max-age=3" in browser.get("/connect").headers["set-cookie"].lower()
    time.sleep(3.5)
    r = browser.get("/me")
    assert r.status_code == 303 and r.headers["location"] == "/"

    # 6 a minute: the sign-in and the look at the cookie took 3, 3.5 s gave back 0.35
    answers = [browser.get("/connect").status_code for _ in range(6)]
    assert answers[:3] == [302] * 3 and answers[4:] == [429] * 2, answers
    r = browser.get("/connect")
    assert r.status_code == 429 and r.headers["retry-after"] == "60"
    assert "Too many sign-in attempts" in r.text
    assert browser.get("/").status_code == 200  # only signing in is limited
    browser.close()


def test_the_session_cookie_is_secure_with_an_https_public_url(
    live_sim: Sim, tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        live_sim,
        port,
        generate_key(),
        http='public_url = "https://calendar.example.edu"',
    )
    running = start_daemon(config, port)
    r = httpx.get(f"{running.url}/connect")
    assert r.status_code == 302
    location = r.headers["location"]
    assert location.startswith(f"{live_sim.url}/login/oauth2/auth?")
    assert "redirect_uri=https%3A%2F%2Fcalendar.example.edu%2Foauth%2Fcallback" in location
    cookie = r.headers["set-cookie"].lower()
    assert "; secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    for header, value in (
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ):
        assert r.headers[header] == value
    home = httpx.get(f"{running.url}/")
    csp = home.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "'unsafe-inline'" not in csp
    assert "form-action 'self'" in csp and "frame-ancestors 'none'" in csp
    assert '<meta name="viewport"' in home.text and "<script" not in home.text


def test_disconnect_deletes_nothing_while_canvas_is_unreachable(
    tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    from bridge.simulator.app import create_app
    from bridge.simulator.sample import SAMPLE_TOKENS, sample_world
    from bridge.simulator.server import serve_in_thread

    port = free_port()
    world = sample_world()
    with serve_in_thread(create_app(world, control=True)) as server:
        sim = Sim(world, server, dict(SAMPLE_TOKENS))
        config = write_config(tmp_path, sim, port, generate_key())
        running = start_daemon(config, port)
        browser = Browser(running.url)
        me = browser.sign_in("Alice Liddell")
        url = feed_url(me)
        wait_feed(url)
        csrf = browser.csrf()
    # Canvas is gone: the token cannot be revoked, so nothing is deleted
    r = browser.post("/me/disconnect", {"remove_events": "on"}, csrf=csrf)
    assert r.status_code == 502 and "nothing was deleted" in r.text
    assert [name for _, name, _ in people_in(config)] == ["Alice Liddell"]
    assert browser.get("/me").status_code == 200
    assert httpx.get(url).status_code == 200
    browser.close()


def test_a_replica_with_the_same_keys_accepts_the_session(
    live_sim: Sim, tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    """Two daemons on one state store and one key file (as replicas behind a balancer): a
    sign-in at one is a sign-in at the other, with no session key to configure."""
    key = generate_key()
    port_a, port_b = free_port(), free_port()
    config_a = write_config(tmp_path, live_sim, port_a, key)
    replica = tmp_path / "replica"
    replica.mkdir()
    text = config_a.read_text()
    config_b = replica / "config.toml"
    config_b.write_text(
        text.replace(f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}").replace(
            f"127.0.0.1:{port_a + 1}", f"127.0.0.1:{port_b + 1}"
        )
    )
    a, b = start_daemon(config_a, port_a), start_daemon(config_b, port_b)
    browser = Browser(a.url)
    browser.sign_in("Alice Liddell")
    other = Browser(b.url)
    other.http.cookies = browser.http.cookies
    page = other.page("/me")
    assert page.one("h1").all_text == "Alice Liddell"
    # a daemon with another key (on the same store, where Alice exists): the cookie is
    # worthless there
    (replica / "other.keys").write_text(generate_key() + "\n")
    config_c = replica / "config-c.toml"
    port_c = free_port()
    config_c.write_text(
        config_b.read_text()
        .replace(str(tmp_path / "state.keys"), str(replica / "other.keys"))
        .replace(f"127.0.0.1:{port_b}", f"127.0.0.1:{port_c}")
        .replace(f"127.0.0.1:{port_b + 1}", f"127.0.0.1:{port_c + 1}")
    )
    c = start_daemon(config_c, port_c)
    stranger = Browser(c.url)
    stranger.http.cookies = browser.http.cookies
    assert stranger.get("/me").status_code == 303
    for each in (browser, other, stranger):
        each.close()
