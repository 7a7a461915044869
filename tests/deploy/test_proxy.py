"""The reverse-proxy examples in deploy/ in front of a running calbridge, over TLS with a
certificate made by the test: feeds, 304s, gzip, HEAD, the subscribe page with public_url,
the http→https redirect, /metrics and /healthz on the admin listener only (never through the
proxy), no feed secret in the proxy's logs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.helpers.daemon import Running, cli, write_config
from tests.helpers.servers import free_port
from tests.helpers.service import REPO
from tests.helpers.sim import Sim

HOST = "calendar.example.edu"
NGINX_CONF = REPO / "deploy" / "nginx" / "calbridge.conf"
CADDYFILE = REPO / "deploy" / "caddy" / "Caddyfile"


def _edited(text: str, edits: dict[str, str]) -> str:
    for old, new in edits.items():
        assert old in text, f"the example no longer has {old!r}"
        text = text.replace(old, new)
    return text


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", f"/CN={HOST}"),
            *("-addext", f"subjectAltName=DNS:{HOST}"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}: {log.read_text()[-2000:]}")


@contextmanager
def _server(
    cmd: list[str], port: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_port(port, proc, log)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Proxy:
    """HTTPS requests to the proxy on 127.0.0.1, addressed (SNI, Host) as the public name."""

    def __init__(self, https_port: int, http_port: int, ca: Path) -> None:
        self.https_port, self.http_port = https_port, http_port
        self.context = ssl.create_default_context(cafile=str(ca))

    def get(self, path: str, method: str = "GET", **headers: str) -> httpx.Response:
        with httpx.Client(verify=self.context, timeout=30) as client:
            return client.request(
                method,
                f"https://127.0.0.1:{self.https_port}{path}",
                headers={"host": HOST, **headers},
                extensions={"sni_hostname": HOST},
            )


def _check_feeds_through(proxy: Proxy, daemon: Running, redirect_status: int) -> str:
    """Everything a calendar client does with a feed, through the proxy; returns the secret.
    ``redirect_status``: nginx's example answers http with 301, Caddy's automatic HTTPS 308."""
    (feed,) = [row for row in _feeds(daemon.config) if row["id"] == "alice"]
    assert feed["https"].startswith(f"https://{HOST}/feeds/alice/")
    path = feed["https"].removeprefix(f"https://{HOST}")
    direct = httpx.get(f"{daemon.url}{path}")
    assert direct.status_code == 200
    via = proxy.get(path)
    assert via.status_code == 200 and via.content == direct.content
    assert via.headers["content-type"] == "text/calendar; charset=utf-8"
    assert via.headers["etag"] == direct.headers["etag"]
    assert via.headers["strict-transport-security"] == "max-age=31536000"
    assert proxy.get(path, **{"if-none-match": via.headers["etag"]}).status_code == 304
    gz = proxy.get(path, **{"accept-encoding": "gzip"})
    assert gz.headers["content-encoding"] == "gzip" and gz.content == direct.content
    head = proxy.get(path, method="HEAD")
    assert head.status_code == 200 and head.content == b""
    page = proxy.get(path.removesuffix(".ics"))
    assert page.status_code == 200 and f"webcal://{HOST}/feeds/alice/" in page.text
    for private in ("/metrics", "/healthz", "/metrics/", "/healthz?x=1"):
        assert proxy.get(private).status_code == 404, private
        assert httpx.get(f"{daemon.url}{private}").status_code == 404, private  # the upstream
    # Still there, privately, on the admin listener the proxy does not forward to.
    assert "calbridge_feed_requests_total" in httpx.get(f"{daemon.admin_url}/metrics").text
    assert httpx.get(f"{daemon.admin_url}/healthz").json()["status"] == "ok"
    redirect = httpx.get(f"http://127.0.0.1:{proxy.http_port}{path}", headers={"host": HOST})
    assert redirect.status_code == redirect_status
    assert redirect.headers["location"].startswith(f"https://{HOST}")
    return path.rsplit("/", 1)[-1].removesuffix(".ics")


def _feeds(config: Path) -> list[dict[str, str]]:
    out = cli("feeds", "-c", str(config), "--json")
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, str]] = json.loads(out.stdout)
    return rows


@pytest.fixture
def daemon(
    live_sim: Sim,
    tmp_path: Path,
    start_daemon: Callable[..., Running],
    monkeypatch: pytest.MonkeyPatch,
) -> Running:
    monkeypatch.setenv("CALBRIDGE_HTTP__PUBLIC_URL", f"https://{HOST}")
    port = free_port()
    running = start_daemon(write_config(tmp_path, live_sim, port), port)
    deadline = time.monotonic() + 30
    while httpx.get(f"{running.admin_url}/healthz").json()["status"] != "ok":
        assert time.monotonic() < deadline, "the daemon never finished its first poll"
        time.sleep(0.2)
    return running


def test_nginx_example_serves_feeds_over_tls(daemon: Running, tmp_path: Path) -> None:
    work = tmp_path / "nginx"
    (work / "logs").mkdir(parents=True)
    cert, _ = _self_signed(work)
    https_port, http_port = free_port(), free_port()
    site = _edited(
        NGINX_CONF.read_text(),
        {
            "server 127.0.0.1:8765;": f"server 127.0.0.1:{daemon.url.rsplit(':', 1)[1]};",
            "    listen 80;\n    listen [::]:80;\n": f"    listen 127.0.0.1:{http_port};\n",
            "    listen 443 ssl http2;\n    listen [::]:443 ssl http2;\n": (
                f"    listen 127.0.0.1:{https_port} ssl http2;\n"
            ),
            "/etc/ssl/calbridge/": f"{work}/",
            "/var/log/nginx/": f"{work}/logs/",
        },
    )
    assert "8766" not in site  # forwards to the feed listener, never the admin listener
    (work / "calbridge.conf").write_text(site)
    main = work / "nginx.conf"
    main.write_text(
        f"pid {work}/nginx.pid;\nuser root root;\nworker_processes 1;\n"
        f"error_log {work}/logs/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {work}/calbridge.conf;\n}}\n"
    )
    base = ["nginx", "-p", f"{work}/", "-e", f"{work}/logs/error.log", "-c", str(main)]
    test = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=60)
    assert test.returncode == 0 and "syntax is ok" in test.stderr, test.stderr
    with _server([*base, "-g", "daemon off;"], https_port, work / "nginx.out"):
        secret = _check_feeds_through(Proxy(https_port, http_port, cert), daemon, 301)
    access = (work / "logs" / "calbridge.access.log").read_text()
    assert " GET 200 " in access and " GET 304 " in access and " GET 301 " in access
    for log in (work / "logs").iterdir():
        assert secret not in log.read_text(), log.name


def test_caddy_example_serves_feeds_over_tls(daemon: Running, tmp_path: Path) -> None:
    caddy = shutil.which("caddy")
    assert caddy, "caddy is missing: run scripts/system-deps.sh (Debian package caddy)"
    work = tmp_path / "caddy"
    work.mkdir()
    https_port, http_port = free_port(), free_port()
    upstream = daemon.url.removeprefix("http://")
    site = _edited(
        CADDYFILE.read_text(), {"reverse_proxy 127.0.0.1:8765": f"reverse_proxy {upstream}"}
    )
    assert "8766" not in site  # forwards to the feed listener, never the admin listener
    (work / "Caddyfile.site").write_text(site)
    # The site as shipped, with a local CA instead of ACME and ports a test may use.
    (work / "Caddyfile").write_text(
        "{\n\tadmin off\n\tlocal_certs\n\tskip_install_trust\n"
        f"\thttp_port {http_port}\n\thttps_port {https_port}\n"
        f"\tstorage file_system {work}/data\n}}\n\nimport {work}/Caddyfile.site\n"
    )
    env = {
        **os.environ,
        "HOME": str(work),
        "XDG_DATA_HOME": str(work),
        "XDG_CONFIG_HOME": str(work),
    }
    config = ["--config", str(work / "Caddyfile"), "--adapter", "caddyfile"]
    valid = subprocess.run(
        [caddy, "validate", *config], capture_output=True, text=True, env=env, timeout=60
    )
    assert valid.returncode == 0 and "Valid configuration" in valid.stdout + valid.stderr, (
        valid.stderr
    )
    with _server([caddy, "run", *config], https_port, work / "caddy.log", env=env):
        root = work / "data" / "pki" / "authorities" / "local" / "root.crt"
        deadline = time.monotonic() + 30
        while True:  # the local CA issues the site's certificate just after start
            try:
                secret = _check_feeds_through(Proxy(https_port, http_port, root), daemon, 308)
                break
            except (httpx.ConnectError, FileNotFoundError, ssl.SSLError):
                assert time.monotonic() < deadline, (work / "caddy.log").read_text()[-2000:]
                time.sleep(0.3)
    assert secret not in (work / "caddy.log").read_text()
