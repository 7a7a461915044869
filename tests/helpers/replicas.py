"""Cluster mode under test: the simulator in its own process, one config shared by several
``calbridge run`` replicas (differing only in ``CALBRIDGE_HTTP__LISTEN`` and the admin
listener), each started and stopped by its PID. Used by tests/cluster and bench/cluster.py."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.servers import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class SimWorld:
    """``bench/canvas_sim.py`` running: its URL, each user's token and Canvas id."""

    proc: subprocess.Popen[str]
    url: str
    tokens: list[str]
    ids: list[int]
    expected: list[int]

    def requests(self) -> list[dict[str, Any]]:
        """The simulator's request log: at (Unix time), user, method, path, status."""
        answer = httpx.get(f"{self.url}/_sim/requests", timeout=60)
        answer.raise_for_status()
        return list(answer.json())


@contextlib.contextmanager
def sim_world(users: int, groups: int, conferences: int) -> Iterator[SimWorld]:
    """A bulk world of ``users`` students (courses of 20; each course's first student holds a
    reservation in each of its ``groups`` appointment groups) served by a simulator process."""
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "bench" / "canvas_sim.py"),
            str(users),
            str(groups),
            str(conferences),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if not first:
            raise RuntimeError(f"the simulator did not start (exit {proc.wait()})")
        info = json.loads(first)
        yield SimWorld(proc, info["url"], info["tokens"], info["ids"], info["expected"])
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cluster_config(
    tmp: Path,
    state_url: str,
    sim: SimWorld,
    *,
    interval: str,
    feeds: set[int],
    caldav: dict[int, tuple[str, str]],
    cluster: str = "",
) -> Path:
    """A config with one account per simulator user (``a<n>``, token in a 0600 file), a feed
    ``f<n>`` for the users in ``feeds``, a CalDAV calendar ``c<n>`` (url, user) with write-back
    for those in ``caldav``; ``[cluster] enabled`` plus the ``cluster`` lines."""
    secrets = tmp / "tokens"
    secrets.mkdir(mode=0o700, exist_ok=True)
    (tmp / "dav.pw").write_text("dav-secret")
    (tmp / "dav.pw").chmod(0o600)
    parts = [
        f'[state]\nurl = "{state_url}"\n[http]\nlisten = "127.0.0.1:0"\n'
        f"[cluster]\nenabled = true\n{cluster}\n"
    ]
    for n, token in enumerate(sim.tokens):
        path = secrets / f"a{n}"
        path.write_text(token)
        path.chmod(0o600)
        parts.append(
            f'[[accounts]]\nid = "a{n}"\ncanvas_url = "{sim.url}"\ntoken_file = "{path}"\n'
            f'poll_interval = "{interval}"\n'
        )
        if n in feeds:
            parts.append(
                f'[[feeds]]\nid = "f{n}"\naccount = "a{n}"\n'
                'include = ["conferences", "reservations"]\n'
            )
        if n in caldav:
            url, user = caldav[n]
            parts.append(
                f'[[caldav]]\nid = "c{n}"\naccount = "a{n}"\nurl = "{url}"\nusername = "{user}"\n'
                f'password_file = "{tmp / "dav.pw"}"\ninclude = ["conferences", "reservations"]\n'
                "writeback = true\n"
            )
    config = tmp / "config.toml"
    config.write_text("\n".join(parts))
    config.chmod(0o600)
    return config


@dataclass
class Replica:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    admin_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self) -> None:
        """SIGTERM (a graceful stop) without waiting: several replicas stop together."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int | None:
        """SIGTERM (a graceful stop), then SIGKILL after 30 s; its exit code."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the replica logs that it listens (its job worker runs by then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "calbridge listening on" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(
            f"replica {self.name} did not start: {self.log.read_text(errors='replace')[-3000:]}"
        )


def start_replica(config: Path, tmp: Path, name: str) -> Replica:
    port, admin = free_port(), free_port()
    env = {
        **os.environ,
        "CALBRIDGE_HTTP__LISTEN": f"127.0.0.1:{port}",
        "CALBRIDGE_HTTP__ADMIN_LISTEN": f"127.0.0.1:{admin}",
        "CALBRIDGE_HTTP__PUBLIC_URL": "http://calendar.test",  # the same links from every replica
    }
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "-c", str(config)],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Replica(name, proc, port, admin, log)


@contextlib.contextmanager
def replicas(config: Path, tmp: Path, count: int) -> Iterator[list[Replica]]:
    """``count`` replicas of ``config``, started together (they take turns creating the
    schema); all stopped by PID at the end, however the block ends."""
    started: list[Replica] = []
    try:
        for n in range(1, count + 1):
            started.append(start_replica(config, tmp, f"r{n}"))
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:  # all at once: each finishes its running jobs meanwhile
            replica.terminate()
        for replica in started:
            replica.stop()
