"""``calbridge db …``: the state database's schema, for operators.

Every process that opens the database upgrades it (one at a time: on PostgreSQL an advisory
lock makes replicas that start together take turns). ``db upgrade`` does it on purpose, e.g.
as a deployment step before the replicas start; ``db current`` says where the database is
without changing it.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from bridge.cli import app, help_without_subcommand, new_app
from bridge.cli.options import ConfigOpt, JsonOpt, load_settings
from bridge.errors import SetupError

db_app = new_app(help="The state database's schema: upgrade it, or show its revision.")
app.add_typer(db_app, name="db")
db_app.callback(invoke_without_command=True)(help_without_subcommand)


@db_app.command("upgrade")
def upgrade(config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Bring the state database's schema to the newest revision (creating the database's
    tables when it is empty); safe to run while replicas run or start."""
    from bridge.state.db import upgrade_database
    from bridge.state.inspect import where

    settings = load_settings(config)
    url = settings.state.database_url()
    before, after = upgrade_database(url)
    shown = where(url)
    if as_json:
        typer.echo(json.dumps({"where": shown, "before": before, "after": after}))
    elif before == after:
        typer.echo(f"state: {shown} is at schema {after}, the newest: nothing to do")
    else:
        typer.echo(f"state: {shown} upgraded from schema {before or '(empty)'} to {after}")


@db_app.command("current")
def current(config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """The state database's schema revision and the newest this calbridge knows (changes
    nothing); exit 3 when it cannot be read or was written by a newer calbridge."""
    from dataclasses import asdict

    from bridge.state.db import default_state_url
    from bridge.state.inspect import SchemaStatus, inspect_state

    settings = load_settings(config)
    state = inspect_state(settings.state.url or default_state_url())
    if as_json:
        typer.echo(json.dumps({**asdict(state), "ok": state.ok}))
    else:
        revision = state.revision or "(none)"
        typer.echo(
            f"state: {state.where}: schema {revision}, newest {state.expected} ({state.status})"
        )
    if state.status in (SchemaStatus.UNREADABLE, SchemaStatus.NEWER):
        if as_json:
            raise typer.Exit(3)
        raise SetupError(
            state.detail or f"schema {revision} is unknown to this calbridge", setting="state.url"
        )
