"""CalDAV servers that misbehave, as real HTTP servers on loopback: one that speaks only
Digest and records every Authorization header, one that answers malformed XML, one that
answers a giant body. calbridge names the target and the problem, does not crash or hang, and
the other targets (SabreDAV, with Digest auth) are unaffected."""

from __future__ import annotations

import base64
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from bridge.dav.discovery import ChallengeAuth, TargetSettings, check_target, choose_auth
from bridge.dav.webdav import Dav
from bridge.errors import CalDAVAuthError, CalDAVConflict, CalDAVError
from tests.helpers.options import target_settings
from tests.helpers.servers import Server, sabredav

PASSWORD = "hostile-test-dav-password"
MULTISTATUS_HEAD = b'<?xml version="1.0"?><d:multistatus xmlns:d="DAV:">'
GIANT = 200 << 20  # what the giant server offers to send


class Hostile(BaseHTTPRequestHandler):
    """Behaviour by the first path segment: /digest-only/, /basic/, /malformed/, /giant/,
    /not-multistatus/, /bearer-only/, /conflict/. Every Authorization header is recorded."""

    seen: list[tuple[str, str]]  # (path, Authorization header or "")
    sent: list[int]  # bytes the giant server managed to send, per request

    def log_message(self, format: str, *args: object) -> None:
        return

    def _record(self) -> str:
        auth = self.headers.get("Authorization", "")
        self.seen.append((self.path, auth))
        return auth

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        auth = self._record()
        kind = self.path.strip("/").split("/", 1)[0]
        if kind == "digest-only":
            if not auth.startswith("Digest "):
                self._answer(
                    401,
                    b"",
                    {"WWW-Authenticate": 'Digest realm="hostile", nonce="abc123", qop="auth"'},
                )
            else:
                self._answer(207, MULTISTATUS_HEAD + b"</d:multistatus>")
        elif kind == "basic":
            expected = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
            if auth != expected:
                self._answer(401, b"", {"WWW-Authenticate": 'Basic realm="hostile"'})
            else:
                self._answer(207, MULTISTATUS_HEAD + b"</d:multistatus>")
        elif kind == "bearer-only":
            self._answer(401, b"", {"WWW-Authenticate": 'Bearer realm="hostile"'})
        elif kind == "malformed":
            self._answer(207, MULTISTATUS_HEAD + b"<d:response><d:href>/x</d:hr")
        elif kind == "not-multistatus":
            self._answer(207, b'<?xml version="1.0"?><html><body>hello</body></html>')
        elif kind == "conflict":  # a 412 that says which version the server holds
            self._answer(412, b"", {"ETag": '"theirs-2"'})
        elif kind == "giant":
            self.send_response(207)
            self.send_header("Content-Length", str(GIANT))
            self.end_headers()
            chunk = b"<d:response><d:href>/cal/x.ics</d:href></d:response>" * 1000
            sent = 0
            try:
                self.wfile.write(MULTISTATUS_HEAD)
                while sent < GIANT:
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except OSError:
                pass  # the client hung up: what we want
            self.sent.append(sent)
        else:
            self._answer(404, b"")

    do_PROPFIND = do_REPORT = do_GET = do_PUT = do_DELETE = do_OPTIONS = _handle


class HostileServer:
    def __init__(self) -> None:
        handler = type("Handler", (Hostile,), {"seen": [], "sent": []})
        self.handler = handler
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def seen(self) -> list[tuple[str, str]]:
        return self.handler.seen

    @property
    def sent(self) -> list[int]:
        return self.handler.sent

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    yield server
    server.stop()


@pytest.fixture
def sabre(tmp_path: Path) -> Iterator[Server]:
    with sabredav(tmp_path / "sabre") as server:
        yield server


def settings(url: str, password: str = PASSWORD, username: str = "alice") -> TargetSettings:
    return target_settings("hostile", url, username, password, timeout=5, max_parallel=2)


# --- authentication -------------------------------------------------------------------------


async def test_digest_only_server_never_sees_basic(hostile: HostileServer) -> None:
    auth = await choose_auth(settings(f"{hostile.url}/digest-only/"))
    assert auth.scheme == "digest"
    dav = Dav(f"{hostile.url}/digest-only/cal/", auth, target="hostile", timeout=5, max_parallel=2)
    try:
        await dav.list_all()
        await dav.list_all()
    finally:
        await dav.aclose()
    headers = [h for _, h in hostile.seen]
    assert headers[0] == ""  # nothing is sent before the server asks
    assert all(not h.startswith("Basic") for h in headers), headers
    assert sum(h.startswith("Digest ") for h in headers) >= 3
    assert all(PASSWORD not in h for h in headers)


async def test_basic_only_in_answer_to_a_basic_challenge(hostile: HostileServer) -> None:
    auth = await choose_auth(settings(f"{hostile.url}/basic/"))
    assert auth.scheme == "basic"
    assert hostile.seen[0][1] == "" and hostile.seen[1][1].startswith("Basic ")
    with pytest.raises(CalDAVAuthError, match="refused the username or password"):
        await choose_auth(settings(f"{hostile.url}/basic/", password="wrong-password-here"))


async def test_unknown_scheme_is_named(hostile: HostileServer) -> None:
    with pytest.raises(CalDAVAuthError, match="asks for bearer authentication"):
        await choose_auth(settings(f"{hostile.url}/bearer-only/"))
    assert all(h == "" for _, h in hostile.seen)


async def test_challenge_auth_against_sabredav_digest(sabre: Server) -> None:
    auth = await choose_auth(settings(sabre.url, sabre.password, sabre.username))
    assert isinstance(auth, ChallengeAuth) and auth.scheme == "digest"
    message = await check_target(settings(sabre.url, sabre.password, sabre.username))
    assert "credentials accepted" in message
    with pytest.raises(CalDAVAuthError) as caught:
        await choose_auth(settings(sabre.url, "not-the-password", sabre.username))
    assert "not-the-password" not in str(caught.value)


# --- conflicts ------------------------------------------------------------------------------


async def test_a_412_with_the_servers_etag_carries_both(hostile: HostileServer) -> None:
    dav = Dav(f"{hostile.url}/conflict/cal/", None, target="hostile", timeout=5, max_parallel=2)  # type: ignore[arg-type]
    try:
        with pytest.raises(CalDAVConflict) as put:
            await dav.put("/conflict/cal/a.ics", "BEGIN:VCALENDAR", etag='"ours-1"')
        with pytest.raises(CalDAVConflict) as delete:
            await dav.delete("/conflict/cal/a.ics", '"ours-1"')
    finally:
        await dav.aclose()
    for caught, method in ((put, "PUT"), (delete, "DELETE")):
        assert (caught.value.expected_etag, caught.value.current_etag) == ('"ours-1"', '"theirs-2"')
        assert str(caught.value) == (
            f"caldav hostile: {method} /conflict/cal/a.ics: changed on the server "
            '(expected ETag "ours-1", the server has "theirs-2") (HTTP 412)'
        )


# --- malformed and giant answers ------------------------------------------------------------


async def test_malformed_multistatus_is_a_clear_caldav_error(hostile: HostileServer) -> None:
    for path, expected in (
        ("malformed", "unreadable multistatus"),
        ("not-multistatus", "expected a DAV multistatus, got <html>"),
    ):
        dav = Dav(f"{hostile.url}/{path}/cal/", None, target="hostile", timeout=5, max_parallel=2)  # type: ignore[arg-type]
        try:
            with pytest.raises(CalDAVError, match=expected) as caught:
                await dav.list_all()
            assert str(caught.value).startswith("caldav hostile: ")
        finally:
            await dav.aclose()


async def test_giant_answer_is_cut_off(hostile: HostileServer) -> None:
    dav = Dav(
        f"{hostile.url}/giant/cal/",
        None,  # type: ignore[arg-type]
        target="hostile",
        timeout=5,
        max_parallel=2,
        max_response_bytes=4 << 20,
    )
    started = time.monotonic()
    try:
        with pytest.raises(CalDAVError, match="answered more than 4 MB; refused"):
            await dav.list_all()
    finally:
        await dav.aclose()
    assert time.monotonic() - started < 10
    with pytest.raises(CalDAVError, match="more than 1 MB to a PROPFIND of one resource"):
        await choose_auth(settings(f"{hostile.url}/giant/"))


def test_check_reports_each_hostile_target_and_the_good_one_is_unaffected(
    hostile: HostileServer, sabre: Server, tmp_path: Path
) -> None:
    password = tmp_path / "dav.pw"
    password.write_text(PASSWORD)
    password.chmod(0o600)
    sabre_pw = tmp_path / "sabre.pw"
    sabre_pw.write_text(sabre.password)
    sabre_pw.chmod(0o600)
    token = tmp_path / "token"
    token.write_text("x" * 20)
    token.chmod(0o600)
    targets = "".join(
        f"""
[[caldav]]
id = "{name}"
account = "alice"
url = "{hostile.url}/{name}/"
username = "alice"
password_file = "{password}"
"""
        for name in ("digest-only", "malformed", "giant", "bearer-only")
    )
    config = tmp_path / "config.toml"
    config.write_text(f"""
[state]
url = "sqlite:///{tmp_path / "state.sqlite3"}"
[[accounts]]
id = "alice"
canvas_url = "http://127.0.0.1:9"
token_file = "{token}"
{targets}
[[caldav]]
id = "sabre"
account = "alice"
url = "{sabre.url}"
username = "{sabre.username}"
password_file = "{sabre_pw}"
""")
    config.chmod(0o600)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.monotonic() - started
    rss_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    lines = {line.split(":", 1)[0]: line for line in out.stdout.splitlines()}
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert lines["caldav sabre"].startswith("caldav sabre: ok: credentials accepted")
    assert lines["caldav malformed"].startswith(
        "caldav malformed: FAILED: caldav malformed: "
    ) and lines["caldav malformed"].endswith(
        "answered PROPFIND with malformed XML (unclosed token: line 1, column 73)"
    )
    assert "more than 1 MB" in lines["caldav giant"]
    assert "asks for bearer authentication" in lines["caldav bearer-only"]
    assert lines["caldav digest-only"].startswith("caldav digest-only: ok: credentials accepted")
    assert PASSWORD not in out.stdout + out.stderr
    assert all(not h.startswith("Basic") for p, h in hostile.seen if p.startswith("/digest-only"))
    assert seconds < 60 and rss_mb < 400, (seconds, rss_mb)
    assert sum(hostile.sent) < 50 << 20  # we hung up long before the 200 MB were sent
    print(out.stdout)
    print(
        f"check: {seconds:.1f}s, max RSS of a child {rss_mb:.0f} MB, giant bytes sent {hostile.sent}"
    )


def test_http_probe_with_httpx_directly_would_send_basic_first(hostile: HostileServer) -> None:
    """The library default this module guards against: httpx with BasicAuth sends the
    password before any challenge (what calbridge did before)."""
    httpx.request(
        "PROPFIND", f"{hostile.url}/digest-only/", auth=httpx.BasicAuth("alice", PASSWORD)
    )
    assert hostile.seen[0][1].startswith("Basic ")
