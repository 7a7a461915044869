"""The ``calbridge`` command line.

Each command group lives in its own module and registers itself on :data:`app`. Errors become
exit codes here and only here: a :class:`~bridge.errors.BridgeError` prints one line on stderr
and exits with its ``exit_code``; anything else is a bug and exits 70 with a short message
(the traceback only with ``CALBRIDGE_DEBUG=1``).
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from bridge.errors import BridgeError

app = typer.Typer(
    name="calbridge",
    help="Canvas conferences and Scheduler bookings in your calendars.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_INTERNAL = 70


def _register() -> None:
    """Import the command modules; each adds its commands to :data:`app`."""
    from bridge.cli import canvas_cmd, daemon_cmd, demo_cmd, simulator_cmd, writeback_cmd  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``calbridge`` console script."""
    _register()
    try:
        # Without standalone mode click returns a command's exit code instead of exiting.
        code = app(args=argv, standalone_mode=False)
    except BridgeError as exc:
        print(f"calbridge: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("calbridge: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:  # click's usage errors are handled below
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if os.environ.get("CALBRIDGE_DEBUG"):
            traceback.print_exc()
        print(f"calbridge: internal error: {type(exc).__name__}", file=sys.stderr)
        sys.exit(EXIT_INTERNAL)
    sys.exit(code if isinstance(code, int) else 0)
