"""A daemon under test: `calbridge run` as a subprocess, a notify socket made by the test."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Sim
from tests.servers import free_port


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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in m for m in self.messages):
                return
            self.notify.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                self.messages.append(self.notify.recv(4096).decode())
            except TimeoutError:
                break
        raise AssertionError(f"no {text!r} from the daemon; got {self.messages}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[object]:
    started: list[Running] = []

    def start(
        config: Path, port: int, max_fds: int | None = None, log: Path | None = None
    ) -> Running:
        sock_path = tmp_path / f"notify-{len(started)}.sock"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(sock_path))
        env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "2000000"}
        limit = (max_fds, max_fds) if max_fds else None
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "-c", str(config)],
            env=env,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit))
            if limit
            else None,
            stdout=subprocess.PIPE,
            stderr=log.open("w") if log else subprocess.PIPE,
            text=True,
        )
        running = Running(proc, notify, f"http://127.0.0.1:{port}", config, [])
        started.append(running)
        running.wait_for("READY=1")
        return running

    yield start
    for running in started:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()
        running.notify.close()


__all__ = ["Running", "cli", "free_port", "write_config"]
