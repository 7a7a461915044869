"""``calbridge writebacks``: recent write-backs to Canvas with their outcome (the journal)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from bridge.cli import app
from bridge.cli.daemon_cmd import ConfigOpt, JsonOpt, _settings
from bridge.cli.options import default_state_url, open_state


@app.command("writebacks")
def writebacks(
    config: Path | None = ConfigOpt,
    limit: int = typer.Option(50, "--limit", metavar="N", help="How many, newest first."),
    target: str | None = typer.Option(
        None, "--target", metavar="ID", help="Only this CalDAV target."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Recent write-backs (cancel, rebook, reserve) and what Canvas said."""
    settings = _settings(config)
    state = open_state(settings.state.url or default_state_url())
    try:
        entries = state.journal.recent(limit, target)
    finally:
        state.close()
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        **vars(e),
                        "created_at": e.created_at.isoformat(),
                        "updated_at": e.updated_at.isoformat(),
                    }
                    for e in entries
                ],
                indent=2,
            )
        )
        return
    if not entries:
        typer.echo("(no write-backs yet)")
    for e in entries:
        typer.echo(
            f"{e.updated_at:%Y-%m-%d %H:%M} {e.target_id:12} {e.action:8} {e.state:8} {e.uid}  {e.outcome}"
        )
