"""Issue 13's walk-through in a real browser: headless Chromium (Selenium, chromium-driver)
against a real daemon process (`calbridge run`), the Canvas simulator and Radicale.

A person opens the home page, presses Connect with Canvas, picks a sample user on the
simulator's authorize page and lands on their page; the subscribe URL serves a valid feed; they
add a Radicale calendar (a wrong address first: the error is shown and the fields kept) and its
events arrive; they change what the feed includes and the feed changes; they rotate the secret
(old URL 404); they disconnect, removing the events: the token is gone at the simulator, the
feed answers 404, the calendar is empty. Every page is kept as a screenshot in test-artifacts/
(desktop, and the person's page at phone width, which must not scroll sideways)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import caldav
import httpx
import pytest

from bridge.simulator.sample import SAMPLE_CLIENT_SECRET
from bridge.state.vault import generate_key
from tests.helpers.browser import PHONE, Browser
from tests.helpers.daemon import Running
from tests.helpers.portal import write_config
from tests.helpers.servers import Server, free_port, radicale
from tests.helpers.sim import Sim
from tests.helpers.validators import assert_valid
from tests.helpers.walkthrough import eventually, kinds, served_feed

USER = "Alice Liddell"


@pytest.fixture
def dav(tmp_path: Path) -> Iterator[Server]:
    with radicale(tmp_path / "radicale") as server:
        yield server


def calendar_events(server: Server) -> dict[str, int]:
    """Events in each of the user's calendars on the server, by calendar name."""
    client = caldav.DAVClient(server.url, username=server.username, password=server.password)
    return {
        str(cal.get_display_name()): len(cal.events()) for cal in client.principal().calendars()
    }


def grants(sim: Sim) -> list[dict[str, object]]:
    """The live OAuth grants, from the simulator's control surface."""
    found: list[dict[str, object]] = httpx.get(f"{sim.url}/_sim/oauth").json()["grants"]
    return found


def ics_url(browser: Browser) -> str:
    href = browser.one("section.feed a.ics-url").get_attribute("href")
    assert href and href.endswith(".ics"), href
    return href


def sign_in(browser: Browser, home: str) -> None:
    browser.open(home)
    assert browser.one("a#connect").text.strip() == "Connect with Canvas"
    browser.shot("1-home")
    browser.one("a#connect").click()
    browser.wait_url(r"/login/oauth2/auth\?")
    browser.shot("2-authorize")
    browser.label(USER).click()
    browser.one("button[value=authorize]").click()
    browser.wait_url(r"/me$")


def check_phone_width(browser: Browser) -> None:
    with browser.phone():
        assert browser.driver.execute_script("return window.innerWidth") == PHONE[0]
        assert browser.scroll_width() <= PHONE[0], "the page scrolls sideways on a phone"
        browser.shot("3-me")


def add_calendar(browser: Browser, url: str, server: Server, name: str) -> None:
    form = browser.one("form#add-calendar")
    for field, value in (("url", url), ("username", server.username), ("calendar", name)):
        box = form.find_element("css selector", f"input[name={field}]")
        box.clear()
        box.send_keys(value)
    form.find_element("css selector", "input[name=password]").send_keys(server.password)
    form.find_element("css selector", "button[type=submit]").click()


def test_a_person_goes_through_institution_mode_in_chromium(
    live_sim: Sim,
    tmp_path: Path,
    dav: Server,
    start_daemon: Callable[..., Running],
    browser: Browser,
) -> None:
    sim = live_sim
    port = free_port()
    daemon = start_daemon(write_config(tmp_path, sim, port, generate_key()), port)
    home = f"{daemon.url}/"
    alice = next(u.id for u in sim.world.users.values() if u.name == USER)

    # Connect: home page, the simulator's authorize page, the person's page.
    sign_in(browser, home)
    assert browser.one("h1").text == USER
    assert "Connected" in browser.one("p#status").text
    session = browser.cookie("calbridge_session")
    assert session and session["httpOnly"] and session.get("sameSite") == "Lax"
    assert [g["user_id"] for g in grants(sim)] == [alice]
    with sim.world.lock:
        grant = sim.world.oauth.grants[0]
        secrets = [grant.access_token, grant.refresh_token]
    secrets += [SAMPLE_CLIENT_SECRET, dav.password, (tmp_path / "state.keys").read_text()]
    assert browser.all("section#writebacks")
    first_url = ics_url(browser)

    # The subscribe URL serves a valid feed of Alice's Canvas.
    body = served_feed(first_url)
    assert assert_valid(body) > 0
    before = kinds(body)
    assert before.get("conference", 0) > 0 and before.get("reservation", 0) > 0, before
    browser.driver.refresh()  # the status now tells the last sync
    browser.wait_for("p#status")
    browser.shot("3-me")
    check_phone_width(browser)

    # A calendar at an address where nothing answers: a clear error, fields kept but the
    # password, nothing saved.
    nowhere = f"http://127.0.0.1:{free_port()}/"
    add_calendar(browser, nowhere, dav, "Canvas")
    error = browser.wait_for("form#add-calendar p.error").text
    assert "Calendar not added" in error, error
    form = browser.one("form#add-calendar")
    assert form.find_element("css selector", "input[name=url]").get_attribute("value") == (nowhere)
    assert form.find_element("css selector", "input[name=password]").get_attribute("value") in (
        "",
        None,
    )
    assert browser.all("section.calendar") == []
    browser.shot("4-calendar-error")

    # Radicale: saved after the live check, and the events arrive.
    add_calendar(browser, dav.url, dav, "Canvas")
    browser.wait_url(r"/me$")
    section = browser.wait_for("section.calendar")
    assert dav.url.rstrip("/") in section.text
    arrived = eventually(
        lambda: calendar_events(dav).get("Canvas", 0), "events in Radicale", timeout=60
    )
    assert isinstance(arrived, int) and arrived > 0
    browser.driver.refresh()
    browser.shot("5-calendar-added")

    # Includes: only reservations from now on; the feed's body follows.
    settings = browser.one("section.feed form.feed-settings")
    for box in settings.find_elements("css selector", "input[name=include]"):
        if box.is_selected() != (box.get_attribute("value") == "reservations"):
            box.click()
    settings.find_element("css selector", "button[type=submit]").click()
    browser.wait_url(r"/me$")
    checked = [
        b.get_attribute("value")
        for b in browser.all("section.feed form.feed-settings input[name=include]")
        if b.is_selected()
    ]
    assert checked == ["reservations"]

    def only_reservations() -> dict[str, int] | None:
        now = kinds(served_feed(first_url))
        return now if set(now) == {"reservation"} else None

    after = eventually(only_reservations, "the feed to drop all but reservations")
    assert after == {"reservation": before["reservation"]}
    browser.shot("6-includes-saved")

    # Rotate: a new address; the old one is gone at once.
    browser.one("section.feed form.rotate button").click()
    browser.wait_url(r"/me$")
    second_url = ics_url(browser)
    assert second_url != first_url
    assert httpx.get(first_url).status_code == 404
    assert assert_valid(served_feed(second_url)) == before["reservation"]
    browser.shot("7-rotated")

    # Disconnect, removing the events written into Radicale.
    browser.one("form#disconnect input[name=remove_events]").click()
    browser.one("form#disconnect button").click()
    browser.wait_for("h1")
    assert "Disconnected" in browser.one("h1").text
    browser.shot("8-disconnected")
    assert grants(sim) == [], "the token was not revoked at the simulator"
    assert httpx.get(second_url).status_code == 404
    assert calendar_events(dav).get("Canvas", 0) == 0
    browser.open(f"{daemon.url}/me")
    assert browser.url == home  # signed out: back on the home page
    assert browser.all("a#connect") and not browser.all("a#my-page")

    assert len(browser.shots) == 9
    # No token, password or key in any page the person saw.
    for page in browser.pages:
        assert not [s for s in secrets if s.strip() in page]
