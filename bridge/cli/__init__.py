"""The ``calbridge`` command line.

Each command group lives in its own module and registers itself on :data:`app`. Click (typer's
engine) runs in standalone mode, so usage errors follow click's conventions whichever click is
underneath — typer < 0.26 uses the ``click`` package, newer typer bundles its own copy: the usage
line and the offending option on stderr, exit 2. Errors of calbridge become exit codes here and
only here: a :class:`~bridge.errors.BridgeError` prints one line on stderr and exits with its
``exit_code``; anything else is a bug and exits 70 with a short message (the traceback only with
``CALBRIDGE_DEBUG=1``).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import typer

from bridge import __version__
from bridge.errors import BridgeError

EXIT_INTERNAL = 70


def new_app(name: str | None = None, help: str | None = None) -> typer.Typer:
    """A command group that behaves like every other one of calbridge.

    Plain help text (``rich_markup_mode=None``: ``[logging]`` in a help text stays as written, no
    ``<bool>`` after flags), and help with exit 0 when called without a subcommand (click ≥ 8.2
    would exit 2 for ``no_args_is_help``).
    """
    group = typer.Typer(
        name=name,
        help=help,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    return group


def help_without_subcommand(ctx: typer.Context) -> None:
    """Print the group's help and exit 0 when no subcommand was given."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


app = typer.Typer(
    name="calbridge",
    help="Canvas conferences and Scheduler bookings in your calendars.",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["--help", "-h"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"calbridge {__version__}")
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        is_eager=True,
        callback=_print_version,
    ),
) -> None:
    help_without_subcommand(ctx)


# The command modules, in the order ``--help`` lists their commands.
COMMAND_MODULES = (
    "daemon_cmd",  # run, sync, render, feeds
    "check_cmd",
    "writeback_cmd",
    "demo_cmd",
    "simulator_cmd",
    "canvas_cmd",
    "oauth_cmd",
    "users_cmd",  # users, keys
    "db_cmd",
    "cluster_cmd",
    "docs_cmd",  # the hidden `man`
)


def _register() -> None:
    """Import the command modules; each adds its commands to :data:`app`."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"bridge.cli.{name}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``calbridge`` console script."""
    _register()
    try:
        # Standalone mode: click shows its own usage errors and exits (2), handles --help,
        # --version, completion and Ctrl-C ("Aborted!", exit 1); what it lets through is ours.
        app(args=argv, prog_name="calbridge", standalone_mode=True)
    except BridgeError as exc:
        print(f"calbridge: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:
        if os.environ.get("CALBRIDGE_DEBUG"):
            traceback.print_exc()
        print(f"calbridge: internal error: {type(exc).__name__}", file=sys.stderr)
        sys.exit(EXIT_INTERNAL)
    sys.exit(0)
