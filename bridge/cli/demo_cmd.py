"""``calbridge demo``: everything at once, no config — the Canvas simulator with sample data,
the daemon on it with temporary SQLite state, feeds on localhost. Ctrl-C stops it all and
removes the temporary state.

The simulator listens on a random free port; the accounts set ``uid_host`` so that the events'
UIDs do not carry that port and stay the same from one run to the next.

It also serves institution mode against the simulator: an ``[oauth]`` section with the
simulator's sample developer key (whose redirect URIs allow any port on 127.0.0.1) and an
encryption key generated into the demo's directory, so "Connect with Canvas" on the home page
goes through the simulator's authorize page. The feed listener gets a definite port before the
daemon starts: the developer key's redirect URI is ``http://127.0.0.1:PORT/oauth/callback``."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import typer

from bridge.cli import app
from bridge.daemon.logs import setup_logging

if TYPE_CHECKING:
    from bridge.config import Settings
    from bridge.daemon.service import Daemon
    from bridge.simulator.server import RunningServer


DEMO_UID_HOST = "canvas-simulator.calbridge.invalid"

LOOPBACK_NOTE = (
    "Google Calendar and Outlook fetch feeds from their own servers and cannot reach {host}: "
    "their buttons work once calbridge has a public https address (http.public_url, see the "
    "README). Apple Calendar, Thunderbird or curl on this machine can subscribe now."
)


DEMO_SECRET_ENV = "CALBRIDGE_DEMO_CLIENT_SECRET"


def _port(wanted: int) -> int:
    """``wanted`` if it is free on 127.0.0.1, else (or for 0) a free one the kernel picks."""
    for port in (wanted, 0) if wanted else (0,):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


@app.command("demo")
def demo(
    port: int = typer.Option(
        8765, "--port", metavar="PORT", help="Port for the feeds (a free one if taken)."
    ),
    poll_interval: str = typer.Option(
        "30s", "--poll-interval", metavar="DURATION", help="How often the demo polls the simulator."
    ),
) -> None:
    """Run the simulator and the daemon together; print the feeds' subscribe pages and the
    home page, where Connect with Canvas signs a sample user in (institution mode)."""
    from bridge.daemon.service import Daemon
    from bridge.simulator.app import create_app
    from bridge.simulator.sample import SAMPLE_CLIENT_SECRET, SAMPLE_TOKENS, sample_world
    from bridge.simulator.server import serve_in_thread

    setup_logging("info")
    os.environ["CALBRIDGE_DEMO_ALICE"] = SAMPLE_TOKENS["alice"]
    os.environ["CALBRIDGE_DEMO_TEACHER"] = SAMPLE_TOKENS["teacher"]
    os.environ[DEMO_SECRET_ENV] = SAMPLE_CLIENT_SECRET
    listen = f"127.0.0.1:{_port(port)}"
    # Ctrl-C waits until the cleanup below is armed: a SIGINT that lands just after mkdtemp
    # would otherwise leave the directory behind.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    workdir = Path(tempfile.mkdtemp(prefix="calbridge-demo-"))
    simulator: RunningServer | None = None
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        simulator = serve_in_thread(create_app(sample_world(), control=True))
        settings = _demo_settings(workdir, listen, simulator.url, poll_interval)
        code = asyncio.run(
            Daemon(settings, on_ready=partial(_ready, settings, simulator.url, workdir)).run()
        )
    finally:  # also on Ctrl-C before the daemon took over SIGINT
        if simulator is not None:
            simulator.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    raise typer.Exit(code)


def _demo_settings(workdir: Path, listen: str, canvas_url: str, poll_interval: str) -> Settings:
    from bridge.config import settings_from
    from bridge.simulator.sample import SAMPLE_CLIENT_ID
    from bridge.state.vault import generate_key

    keys = workdir / "state.keys"
    keys.touch(mode=0o600)
    keys.write_text(generate_key() + "\n")
    return settings_from(
        {
            "state": {
                "url": f"sqlite:///{workdir / 'state.sqlite3'}",
                "encryption_key_file": str(keys),
            },
            "http": {"listen": listen, "admin_listen": "127.0.0.1:0"},
            "oauth": {
                "canvas_url": canvas_url,
                "client_id": SAMPLE_CLIENT_ID,
                "client_secret_env": DEMO_SECRET_ENV,
                "purpose": "calbridge demo",
            },
            "accounts": [
                {
                    "id": "alice",
                    "canvas_url": canvas_url,
                    "token_env": "CALBRIDGE_DEMO_ALICE",
                    "poll_interval": poll_interval,
                    "uid_host": DEMO_UID_HOST,
                },
                {
                    "id": "teacher",
                    "canvas_url": canvas_url,
                    "token_env": "CALBRIDGE_DEMO_TEACHER",
                    "poll_interval": poll_interval,
                    "uid_host": DEMO_UID_HOST,
                    "conference_contexts": ["course_1", "course_2"],
                },
            ],
            "feeds": [
                {
                    "id": "alice",
                    "account": "alice",
                    "name": "Alice's Canvas (demo)",
                    "include": ["conferences", "reservations", "open_slots"],
                },
                {
                    "id": "teacher",
                    "account": "teacher",
                    "name": "Office hours I run (demo)",
                    "include": ["conferences", "managed_slots"],
                    "timezone": "America/New_York",
                },
            ],
        }
    )


def _ready(settings: Settings, canvas_url: str, workdir: Path, daemon: Daemon) -> None:
    from bridge.web.links import feed_urls

    assert daemon.web is not None and daemon.state is not None
    base = daemon.web.url
    typer.echo("")
    typer.echo(
        f"calbridge demo: Canvas simulator on {canvas_url}, feeds on {base}, state in {workdir}"
    )
    for feed in settings.feeds:
        urls = feed_urls(base, feed.id, daemon.state.feed_secret(feed.id), feed.name or feed.id)
        typer.echo(f"  {feed.name}")
        typer.echo(f"    subscribe page: {urls.page}")
        typer.echo(f"    feed:           {urls.https}")
    if daemon.admin is not None:
        typer.echo(f"  health: {daemon.admin.url}/healthz   metrics: {daemon.admin.url}/metrics")
    typer.echo(LOOPBACK_NOTE.format(host=urlsplit(base).hostname))
    typer.echo(
        f"Institution mode: open {base}/ and press Connect with Canvas (the simulator's "
        "authorize page lets you pick a sample user)."
    )
    typer.echo("Open a subscribe page in a browser. Ctrl-C stops the demo.")
    sys.stdout.flush()  # people pipe the demo into tee or a log
