"""A daemon under test: its config, the running process, and the command line beside it."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.helpers.sim import Sim


def write_config(tmp: Path, sim: Sim, port: int, extra: str = "", http: str = "") -> Path:
    (tmp / "alice.token").write_text(sim.tokens["alice"])
    (tmp / "teacher.token").write_text(sim.tokens["teacher"])
    path = tmp / "config.toml"
    path.write_text(f"""
[state]
url = "sqlite:///{tmp / "state.sqlite3"}"
[http]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{port + 1}"
{http}
[[accounts]]
id = "alice"
canvas_url = "{sim.url}"
token_file = "{tmp / "alice.token"}"
poll_interval = "1h"
[[accounts]]
id = "teacher"
canvas_url = "{sim.url}"
token_file = "{tmp / "teacher.token"}"
poll_interval = "1h"
conference_contexts = ["course_1"]
[[feeds]]
id = "alice"
account = "alice"
include = ["conferences", "reservations", "open_slots"]
[[feeds]]
id = "teacher"
account = "teacher"
include = ["managed_slots"]
{extra}
""")
    return path


@dataclass
class Running:
    proc: subprocess.Popen[str]
    notify: socket.socket
    url: str
    config: Path
    messages: list[str]

    @property
    def admin_url(self) -> str:
        """The admin listener (/healthz, /metrics): write_config puts it on the next port."""
        port = int(self.url.rsplit(":", 1)[1])
        return f"http://127.0.0.1:{port + 1}"

    def wait_for(self, text: str, timeout: float = 30) -> None:
        """Until the daemon sends ``text`` on its notify socket; a daemon that exits instead
        fails at once, with its exit code and the end of its stderr."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in m for m in self.messages):
                return
            if self.proc.poll() is not None:
                self.notify.settimeout(0)  # what it sent before exiting is still queued
                with contextlib.suppress(BlockingIOError):
                    while True:
                        self.messages.append(self.notify.recv(4096).decode())
                if any(text in m for m in self.messages):
                    return
                err = self.proc.stderr.read() if self.proc.stderr is not None else ""
                raise AssertionError(
                    f"the daemon exited ({self.proc.returncode}) before {text!r}: {err[-3000:]}"
                )
            self.notify.settimeout(max(0.05, min(0.5, deadline - time.monotonic())))
            with contextlib.suppress(TimeoutError):
                self.messages.append(self.notify.recv(4096).decode())
        raise AssertionError(f"no {text!r} from the daemon; got {self.messages}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=timeout
    )


def feed_urls(config: Path) -> dict[str, str]:
    out = cli("feeds", "-c", str(config), "--json")
    assert out.returncode == 0, out.stderr
    return {row["id"]: row["https"] for row in json.loads(out.stdout)}


def wait_feed(url: str, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(url)
        if r.status_code == 200:
            return r
        time.sleep(0.1)
    raise AssertionError(f"{url} never served")
