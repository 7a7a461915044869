"""The feed server over a real socket: conditional GET, HEAD, gzip, 404s, logs; health and
metrics on the admin listener."""

from __future__ import annotations

import gzip
import logging
import socket
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest

from bridge.errors import SetupError
from bridge.web.health import HealthReport
from bridge.web.links import feed_urls, new_feed_secret
from bridge.web.server import WebServer
from tests.helpers.validators import strict_ical
from tests.helpers.web import CHANGED, ICS, Served, publish


def test_get_serves_the_published_bytes(served: Served) -> None:
    r = httpx.get(served.feed_url, headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200 and r.content == ICS
    assert r.headers["content-type"] == "text/calendar; charset=utf-8"
    assert r.headers["etag"].startswith('"') and r.headers["last-modified"] == format_datetime(
        CHANGED, usegmt=True
    )
    assert "max-age" in r.headers["cache-control"] and r.headers["referrer-policy"] == "no-referrer"
    assert strict_ical(r.text) == 1


def test_head_has_the_same_headers_and_no_body(served: Served) -> None:
    get = httpx.get(served.feed_url, headers={"Accept-Encoding": "identity"})
    head = httpx.head(served.feed_url, headers={"Accept-Encoding": "identity"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == get.headers["etag"] and head.headers["content-length"] == str(
        len(ICS)
    )


def test_if_none_match_gives_304(served: Served) -> None:
    etag = httpx.get(served.feed_url, headers={"Accept-Encoding": "identity"}).headers["etag"]
    for value in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        r = httpx.get(
            served.feed_url, headers={"If-None-Match": value, "Accept-Encoding": "identity"}
        )
        assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert httpx.get(served.feed_url, headers={"If-None-Match": '"stale"'}).status_code == 200


def test_if_modified_since_compares_dates(served: Served) -> None:
    same = format_datetime(CHANGED, usegmt=True)
    later = format_datetime(CHANGED + timedelta(days=1), usegmt=True)
    older = format_datetime(CHANGED - timedelta(seconds=1), usegmt=True)
    assert httpx.get(served.feed_url, headers={"If-Modified-Since": same}).status_code == 304
    assert httpx.get(served.feed_url, headers={"If-Modified-Since": later}).status_code == 304
    assert (
        httpx.get(served.feed_url, headers={"If-Modified-Since": older}).status_code == 200
    )  # Apple relies on this
    assert httpx.get(served.feed_url, headers={"If-Modified-Since": "garbage"}).status_code == 200
    # If-None-Match wins: a stale tag with a fresh date is still a 200
    assert (
        httpx.get(
            served.feed_url, headers={"If-None-Match": '"x"', "If-Modified-Since": later}
        ).status_code
        == 200
    )


def test_gzip_when_asked(served: Served) -> None:
    r = httpx.get(served.feed_url, headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip" and r.content == ICS  # httpx decodes
    with (
        httpx.Client() as client,
        client.stream("GET", served.feed_url, headers={"Accept-Encoding": "gzip"}) as raw,
    ):
        compressed = b"".join(raw.iter_raw())
    assert gzip.decompress(compressed) == ICS and len(compressed) == int(
        raw.headers["content-length"]
    )
    assert raw.headers["vary"] == "Accept-Encoding"
    plain = httpx.get(served.feed_url, headers={"Accept-Encoding": "identity"})
    assert plain.headers["etag"] != r.headers["etag"]
    assert (
        httpx.get(
            served.feed_url, headers={"Accept-Encoding": "gzip", "If-None-Match": r.headers["etag"]}
        ).status_code
        == 304
    )


def test_wrong_secret_and_unknown_feed_look_the_same(served: Served) -> None:
    wrong = httpx.get(f"{served.server.url}/feeds/alice/{new_feed_secret()}.ics")
    unknown = httpx.get(f"{served.server.url}/feeds/nobody/{served.secret}.ics")
    page = httpx.get(f"{served.server.url}/feeds/alice/{new_feed_secret()}")
    assert wrong.status_code == unknown.status_code == page.status_code == 404
    assert wrong.content == unknown.content == page.content
    assert served.secret not in wrong.text


def test_last_good_feed_stays_until_a_new_one_is_published(served: Served) -> None:
    first = httpx.get(served.feed_url).content
    assert httpx.get(served.feed_url).content == first
    newer = ICS.replace(b"Office hours", b"Office hours (moved)")
    publish(served.store, served.secret, newer, CHANGED + timedelta(hours=1))
    assert httpx.get(served.feed_url).content == newer
    rotated = new_feed_secret()
    served.store.set_secret("alice", rotated)
    assert httpx.get(served.feed_url).status_code == 404
    assert httpx.get(f"{served.server.url}/feeds/alice/{rotated}.ics").content == newer


def test_secrets_never_reach_the_logs(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    httpx.get(served.feed_url)
    httpx.get(served.feed_url.removesuffix(".ics"))
    httpx.get(f"{served.server.url}/feeds/alice/{served.secret}x.ics")
    server_side = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith(("bridge", "uvicorn"))
    )
    assert "/feeds/alice/<redacted>.ics 200" in server_side
    assert served.secret not in server_side


def test_healthz_and_metrics(served: Served) -> None:
    assert httpx.get(f"{served.admin.url}/healthz").json() == {"status": "ok", "components": {}}
    served.health.report = HealthReport(
        "degraded", {"account:alice": {"last_error": "Canvas answered 503"}}
    )
    r = httpx.get(f"{served.admin.url}/healthz")
    assert r.status_code == 200 and r.json()["status"] == "degraded"
    served.health.report = HealthReport("failing")
    assert httpx.get(f"{served.admin.url}/healthz").status_code == 503
    httpx.get(served.feed_url)
    text = httpx.get(f"{served.admin.url}/metrics").text
    assert 'calbridge_feed_requests_total{status="200"}' in text


def test_feed_urls_and_the_google_length_limit() -> None:
    secret = new_feed_secret()
    assert len(secret) >= 32  # 192 bits, base64url
    urls = feed_urls("https://cal.example.edu/", "alice", secret, "Alice & co")
    assert urls.https == f"https://cal.example.edu/feeds/alice/{secret}.ics"
    assert urls.webcal == f"webcal://cal.example.edu/feeds/alice/{secret}.ics"
    assert urls.google == "https://calendar.google.com/calendar/r?cid=" + urls.webcal.replace(
        ":", "%3A"
    ).replace("/", "%2F")
    assert (
        "addfromweb?url=https%3A%2F%2Fcal.example.edu" in urls.outlook_live
        and "name=Alice%20%26%20co" in urls.outlook_live
    )
    with pytest.raises(ValueError, match="Google Calendar refuses more than 256"):
        feed_urls("https://cal.example.edu/" + "x" * 200, "alice", secret)


async def _no_app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("never served")


def test_a_taken_listen_address_is_a_setup_error_naming_the_setting() -> None:
    """The web adapter's one boundary for its listen address: exit code 3 (systemd does not
    restart into it), the setting as the daemon named it, the address and the OS's reason."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SetupError) as caught:
            WebServer(
                _no_app,  # type: ignore[arg-type]
                f"127.0.0.1:{port}",
                key="http.admin_listen",
                max_connections=8,
                header_timeout=1.0,
                keepalive_timeout=1.0,
            )
    assert str(caught.value) == (
        f"http.admin_listen: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert caught.value.exit_code == 3
