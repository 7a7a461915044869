"""Real CalDAV servers for the tests: Radicale, Xandikos and SabreDAV, each on a free loopback
port with its data in a temp directory, stopped by PID.

SabreDAV's server script is generated at test time from the example Debian ships
(/usr/share/doc/php-sabre-dav/examples/calendarserver.php), as TESTING.md describes.
"""

from __future__ import annotations

import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SABRE_EXAMPLES = Path("/usr/share/doc/php-sabre-dav/examples")


@dataclass(frozen=True)
class Server:
    name: str
    url: str  # where a CalDAV client starts (discovery)
    home: str  # the calendar home collection
    username: str
    password: str
    auth: str  # "basic" or "digest"


def free_port() -> int:
    """A free loopback port whose successor is free too (the daemon's admin listener).

    Chosen at random below the kernel's ephemeral range: a port the kernel hands out for
    ``bind(("127.0.0.1", 0))`` is free when checked, but any other process (another test
    worker's simulator or server) may be given its successor a moment later, before the
    daemon binds it. Ports below that range are only ever taken by a test that chose them."""
    low, high = _ephemeral_range()
    start, stop = (20_000, low - 1) if low > 21_000 else (high + 1, 65_000)
    for _ in range(200):
        port = random.randrange(start, stop)
        if _bindable(port) and _bindable(port + 1):
            return port
    raise RuntimeError("no pair of free ports")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _wait(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start: {log.read_text()[-2000:]}")


@contextmanager
def _process(cmd: list[str], port: int, workdir: Path) -> Iterator[None]:
    log = workdir / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        _wait(port, proc, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def radicale(tmp: Path, *, check_password: bool = False) -> Iterator[Server]:
    """Radicale; ``check_password``: it refuses any password but the Server's (htpasswd),
    instead of accepting every login."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "radicale.conf"
    auth = "type = none"
    if check_password:
        (tmp / "users").write_text("user:secret-radicale-pw\n")
        auth = f"type = htpasswd\nhtpasswd_filename = {tmp / 'users'}\nhtpasswd_encryption = plain"
    conf.write_text(
        f"[server]\nhosts = 127.0.0.1:{port}\n[auth]\n{auth}\n"
        f"[storage]\nfilesystem_folder = {tmp / 'collections'}\n[logging]\nlevel = warning\n"
    )
    with _process([sys.executable, "-m", "radicale", "--config", str(conf)], port, tmp):
        url = f"http://127.0.0.1:{port}"
        yield Server("radicale", f"{url}/", f"{url}/user/", "user", "secret-radicale-pw", "basic")


@contextmanager
def xandikos(tmp: Path) -> Iterator[Server]:
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "xandikos",
        "serve",
        "-d",
        str(tmp / "data"),
        "-l",
        "127.0.0.1",
        "-p",
        str(port),
        "--autocreate",
        "--no-detect-systemd",
    ]
    with _process(cmd, port, tmp):
        url = f"http://127.0.0.1:{port}"
        yield Server(
            "xandikos", f"{url}/", f"{url}/user/calendars/", "user", "secret-xandikos-pw", "basic"
        )


def _sabre_script(tmp: Path) -> Path:
    source = (SABRE_EXAMPLES / "calendarserver.php").read_text()
    db = tmp / "db.sqlite"
    con = sqlite3.connect(db)
    for name in ("principals", "users", "calendars", "locks"):
        con.executescript((SABRE_EXAMPLES / "sql" / f"sqlite.{name}.sql").read_text())
    con.commit()
    con.close()
    script = source.replace("sqlite:data/db.sqlite", f"sqlite:{db}")
    script = script.replace("// $baseUri = '/';", "$baseUri = '/';")
    script = script.replace(
        "    throw new \\ErrorException($errstr, 0, $errno, $errfile, $errline);",
        "    if ($errno === E_DEPRECATED || $errno === E_USER_DEPRECATED) return true;\n"
        "    throw new \\ErrorException($errstr, 0, $errno, $errfile, $errline);",
    )
    script = script.replace(
        "$browser = new \\Sabre\\DAV\\Browser\\Plugin();\n$server->addPlugin($browser);", ""
    )
    path = tmp / "server.php"
    path.write_text(script)
    return path


@contextmanager
def sabredav(tmp: Path) -> Iterator[Server]:
    if shutil.which("php") is None or not SABRE_EXAMPLES.exists():
        raise RuntimeError(
            "SabreDAV needs php-cli, php-sqlite3 and php-sabre-dav: run `make test` (scripts/system-deps.sh)"
        )
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    script = _sabre_script(tmp)
    with _process(["php", "-S", f"127.0.0.1:{port}", str(script)], port, tmp):
        url = f"http://127.0.0.1:{port}"
        yield Server("sabredav", f"{url}/", f"{url}/calendars/admin/", "admin", "admin", "digest")


SERVERS = {"radicale": radicale, "xandikos": xandikos, "sabredav": sabredav}
