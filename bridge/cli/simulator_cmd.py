"""``calbridge simulator``: the Canvas simulator alone, for trying other tools against it."""

from __future__ import annotations

import signal
import sys
import time
from datetime import datetime
from urllib.parse import urlsplit

import typer

from bridge.cli import app
from bridge.errors import UserError


@app.command("simulator")
def simulator(
    host: str = typer.Option(
        "127.0.0.1", "--host", metavar="ADDRESS", help="Address to listen on."
    ),
    port: int = typer.Option(
        8900, "--port", metavar="PORT", help="Port to listen on (0: any free port)."
    ),
    control: bool = typer.Option(
        False, "--control", help="Enable the /_sim/ test control surface."
    ),
    now: str | None = typer.Option(
        None, "--now", metavar="TIME", help="Start the simulated clock at this ISO 8601 time."
    ),
    redirect_uri: list[str] = typer.Option(
        [],
        "--redirect-uri",
        metavar="URI",
        help="A redirect URI of the sample developer key (repeatable; replaces the default "
        "http://127.0.0.1 and http://localhost; the port is never compared).",
    ),
    key_scopes: str | None = typer.Option(
        None,
        "--key-scopes",
        metavar="SCOPES",
        help="Make the sample developer key enforce these scopes (separated by spaces or "
        'newlines, e.g. "$(calbridge oauth scopes)").',
    ),
) -> None:
    """Serve the Canvas simulator with its sample data until Ctrl-C."""
    from bridge.model.canvas import to_utc
    from bridge.simulator.app import create_app
    from bridge.simulator.sample import (
        SAMPLE_CLIENT_ID,
        SAMPLE_CLIENT_SECRET,
        SAMPLE_REDIRECT_URIS,
        SAMPLE_TOKENS,
        sample_world,
    )
    from bridge.simulator.server import serve_in_thread

    start: datetime | None = None
    if now:
        try:
            start = to_utc(now)
        except ValueError as exc:
            raise UserError(f"--now: {now!r} is not an ISO 8601 time") from exc
    for uri in redirect_uri:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UserError(f"--redirect-uri: {uri!r} is not an http(s) URL")
    scopes = key_scopes.split() if key_scopes is not None else None
    if scopes is not None:
        bad = [s for s in scopes if not s.startswith("url:") or "|/" not in s]
        if bad or not scopes:
            raise UserError(
                f"--key-scopes: {bad[0] if bad else 'nothing'!r} is not a scope like "
                "url:GET|/api/v1/users/:id"
            )
    world = sample_world(start)
    uris = list(redirect_uri) or list(SAMPLE_REDIRECT_URIS)
    world.oauth.add_key(SAMPLE_CLIENT_ID, SAMPLE_CLIENT_SECRET, uris, scopes)
    server = serve_in_thread(create_app(world, control=control), host=host, port=port)
    print(f"Canvas simulator on {server.url}  (sample data; clock {world.clock.now().isoformat()})")
    print("Tokens:")
    for name, token in SAMPLE_TOKENS.items():
        print(f"  {name:8} {token}")
    print("Developer key (OAuth2):")
    print(f"  client_id      {SAMPLE_CLIENT_ID}")
    print(f"  client_secret  {SAMPLE_CLIENT_SECRET}  (a simulator value, not a real secret)")
    print(f"  redirect URIs  {' '.join(uris)}  (any port)")
    print(f"  scopes         {'enforced: ' + str(len(scopes)) if scopes else 'not enforced'}")
    print(f"  authorize at   {server.url}/login/oauth2/auth")
    print("Try:")
    print(
        f"  curl -H 'Authorization: Bearer {SAMPLE_TOKENS['alice']}' {server.url}/api/v1/users/self"
    )
    print(
        f"  curl -H 'Authorization: Bearer {SAMPLE_TOKENS['alice']}' "
        f"'{server.url}/api/v1/appointment_groups?include[]=reserved_times'"
    )
    if control:
        print(f'  curl -X POST -d \'{{"kind": "status", "status": 503}}\' {server.url}/_sim/faults')
    sys.stdout.flush()
    stop = {"now": False}

    def _stop(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stop["now"]:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
