"""``calbridge demo`` as a person runs it (``make demo``): a subprocess stopped with Ctrl-C.
Besides the sample feeds it serves institution mode against its simulator: the printed home
page's "Connect with Canvas" goes through the simulator's authorize page to the person's page,
whose feed works — over httpx and in Chromium."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from icalendar import Calendar

from bridge.cli.demo_cmd import DEMO_UID_HOST
from bridge.web.page import _loopback_note
from tests.helpers.browser import chromium
from tests.helpers.cli import ENTRY_POINTS, clean_env
from tests.helpers.portal import Browser, feed_url, parse
from tests.helpers.validators import assert_valid
from tests.helpers.walkthrough import served_feed


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A private TMPDIR: whatever the demo leaves behind shows up there."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    yield tmp, clean_env(TMPDIR=str(tmp))


def start_demo(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*ENTRY_POINTS["python-m"], "demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def read_until_ready(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C stops the demo" in line:
            return "".join(lines)
    raise AssertionError(f"the demo never got ready: {''.join(lines)}")


def wait_feed(url: str, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(url)
        if r.status_code == 200:
            return r
        time.sleep(0.1)
    raise AssertionError(f"{url} never served")


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_uids_are_stable_notes_loopback_and_ctrl_c_leaves_nothing(
    tmpdir_env: tuple[Path, dict[str, str]],
) -> None:
    tmp, env = tmpdir_env
    proc = start_demo(env)
    try:
        out = read_until_ready(proc)
        workdir = Path(re.search(r"state in (\S+)", out).group(1))  # type: ignore[union-attr]
        sim_port = re.search(r"Canvas simulator on http://127\.0\.0\.1:(\d+)", out).group(1)  # type: ignore[union-attr]
        assert workdir.parent == tmp and workdir.is_dir()
        assert "cannot reach 127.0.0.1" in out and "public https address" in out
        page = re.search(r"subscribe page: (\S+)", out).group(1)  # type: ignore[union-attr]
        feed = re.search(r"feed: +(\S+)", out).group(1)  # type: ignore[union-attr]
        uids = [str(e["UID"]) for e in Calendar.from_ical(wait_feed(feed).text).walk("VEVENT")]
        html = httpx.get(page).text
    finally:
        code = stop(proc)
    assert code == 0
    assert len(uids) > 5
    # The simulator's port is random; the UIDs must not carry it, or every run makes new events.
    assert all(uid.endswith(f"@{DEMO_UID_HOST}") for uid in uids), uids
    assert not any(sim_port in uid for uid in uids)
    assert 'id="loopback-note"' in html and "cannot reach it" in html
    assert not workdir.exists()
    assert list(tmp.iterdir()) == []


def test_demo_serves_institution_mode_against_its_simulator(
    tmpdir_env: tuple[Path, dict[str, str]],
) -> None:
    tmp, env = tmpdir_env
    proc = start_demo(env)
    try:
        out = read_until_ready(proc)
        home = re.search(r"open (\S+/) and press Connect with Canvas", out).group(1)  # type: ignore[union-attr]
        workdir = Path(re.search(r"state in (\S+)", out).group(1))  # type: ignore[union-attr]
        # The generated encryption key sits in the demo's own directory, readable by us only.
        assert (workdir / "state.keys").stat().st_mode & 0o077 == 0
        page = httpx.get(home)
        assert page.status_code == 200
        assert parse(page.text).one("a", id="connect").attrs["href"] == "/connect"

        person = Browser(home)
        try:
            me = person.sign_in("Alice Liddell")
        finally:
            person.close()
        assert me.one("h1").all_text == "Alice Liddell"
        ics_url = feed_url(me)
        assert ics_url.startswith(home) and ics_url.endswith(".ics")
        assert assert_valid(served_feed(ics_url)) > 0

        # Chromium's profile goes beside the demo's TMPDIR, which must end empty. The pages
        # must work without JavaScript: it is off.
        with chromium(tmp.parent / "browser", "demo", javascript=False) as browser:
            browser.open("data:text/html,<title>off</title><script>document.title='on'</script>")
            assert browser.title == "off"
            browser.open(home)
            browser.one("a#connect").click()
            browser.wait_url(r"/login/oauth2/auth\?")
            browser.label("Carol Danvers").click()
            browser.one("button[value=authorize]").click()
            browser.wait_url(r"/me$")
            assert "Carol Danvers" in browser.one("h1").text
            browser.shot("me")
            browser.open(home)  # signed in: the home page links to the person's page
            browser.one("a#my-page").click()
            browser.wait_url(r"/me$")
            browser.one("form#sign-out button").click()  # a plain form post
            browser.wait_url(r"/$")
            assert browser.all("a#connect") and not browser.all("a#my-page")
    finally:
        code = stop(proc)
    assert code == 0
    assert not workdir.exists()
    assert list(tmp.iterdir()) == []


def test_ctrl_c_during_start_up_leaves_nothing(tmpdir_env: tuple[Path, dict[str, str]]) -> None:
    tmp, env = tmpdir_env
    proc = start_demo(env)
    deadline = time.monotonic() + 60
    while not list(tmp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(tmp.iterdir()), "the demo made no temporary directory"
    stop(proc)
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "noted"),
    [
        ("http://127.0.0.1:8765/feeds/x.ics", True),
        ("http://localhost:8765/feeds/x.ics", True),
        ("http://[::1]:8765/feeds/x.ics", True),
        ("https://calendar.example.edu/feeds/x.ics", False),
        ("https://192.0.2.7/feeds/x.ics", False),
    ],
)
def test_subscribe_page_notes_a_loopback_address(url: str, noted: bool) -> None:
    assert bool(_loopback_note(url)) is noted
