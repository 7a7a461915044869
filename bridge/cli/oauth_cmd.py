"""``calbridge oauth …``: what a Canvas administrator needs to set up institution mode.

Institution mode (people connecting themselves with Canvas sign-in) is being built; for now
this group prints the scopes a developer key that enforces scopes must grant.
"""

from __future__ import annotations

import json

import typer

from bridge.cli import app, help_without_subcommand, new_app
from bridge.cli.options import JsonOpt

oauth_app = new_app(help="Canvas sign-in (OAuth2): what the developer key needs.")
app.add_typer(oauth_app, name="oauth")
oauth_app.callback(invoke_without_command=True)(help_without_subcommand)


@oauth_app.command("scopes")
def scopes(as_json: bool = JsonOpt) -> None:
    """Print the scopes calbridge needs, one per line (for a key that enforces scopes).

    Paste them into the developer key, and into [oauth] scopes of the config."""
    from bridge.canvas.scopes import required_scopes

    found = required_scopes()
    if as_json:
        typer.echo(json.dumps(list(found)))
        return
    for scope in found:
        typer.echo(scope)
