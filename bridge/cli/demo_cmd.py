"""``calbridge demo``: everything at once, no config — the Canvas simulator with sample data,
the daemon on it with temporary SQLite state, feeds on localhost. Ctrl-C stops it all."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
from pathlib import Path

import typer

from bridge.cli import app
from bridge.config import settings_from
from bridge.daemon.logs import setup_logging


def _free(port: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


@app.command("demo")
def demo(
    port: int = typer.Option(8765, help="Port for the feeds (a free one if taken)."),
    poll_interval: str = typer.Option("30s", help="How often the demo polls the simulator."),
) -> None:
    """Run the simulator and the daemon together and print the feeds' subscribe pages."""
    from bridge.daemon.service import Daemon
    from bridge.simulator.app import create_app
    from bridge.simulator.sample import SAMPLE_TOKENS, sample_world
    from bridge.simulator.server import serve_in_thread
    from bridge.web.links import feed_urls

    setup_logging("info")
    simulator = serve_in_thread(create_app(sample_world(), control=True))
    workdir = Path(tempfile.mkdtemp(prefix="calbridge-demo-"))
    os.environ["CALBRIDGE_DEMO_ALICE"] = SAMPLE_TOKENS["alice"]
    os.environ["CALBRIDGE_DEMO_TEACHER"] = SAMPLE_TOKENS["teacher"]
    listen = f"127.0.0.1:{_free(port)}"
    settings = settings_from(
        {
            "state": {"url": f"sqlite:///{workdir / 'state.sqlite3'}"},
            "http": {"listen": listen, "admin_listen": "127.0.0.1:0"},
            "accounts": [
                {
                    "id": "alice",
                    "canvas_url": simulator.url,
                    "token_env": "CALBRIDGE_DEMO_ALICE",
                    "poll_interval": poll_interval,
                },
                {
                    "id": "teacher",
                    "canvas_url": simulator.url,
                    "token_env": "CALBRIDGE_DEMO_TEACHER",
                    "poll_interval": poll_interval,
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

    def ready(daemon: Daemon) -> None:
        assert daemon.web is not None and daemon.state is not None
        base = daemon.web.url
        typer.echo("")
        typer.echo(
            f"calbridge demo: Canvas simulator on {simulator.url}, feeds on {base}, state in {workdir}"
        )
        for feed in settings.feeds:
            urls = feed_urls(base, feed.id, daemon.state.feed_secret(feed.id), feed.name or feed.id)
            typer.echo(f"  {feed.name}")
            typer.echo(f"    subscribe page: {urls.page}")
            typer.echo(f"    feed:           {urls.https}")
        if daemon.admin is not None:
            typer.echo(
                f"  health: {daemon.admin.url}/healthz   metrics: {daemon.admin.url}/metrics"
            )
        typer.echo("Open a subscribe page in a browser. Ctrl-C stops the demo.")
        sys.stdout.flush()  # people pipe the demo into tee or a log

    try:
        code = asyncio.run(Daemon(settings, on_ready=ready).run())
    finally:
        simulator.stop()
    raise typer.Exit(code)
