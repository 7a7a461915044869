"""``calbridge man``: the man page on stdout, for packagers (``calbridge man > calbridge.1``).

Hidden from ``--help``: people read the page with ``man``, they do not need to make it.
"""

from __future__ import annotations

import typer

from bridge.cli import app


@app.command("man", hidden=True)
def man() -> None:
    """Print the calbridge(1) man page (roff) on stdout."""
    from bridge.cli.docs import man_page

    typer.echo(man_page(), nl=False)
