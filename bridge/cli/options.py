"""Options shared by the commands that read a config file; one declaration each, so every
command spells them, documents them and reads ``$CALBRIDGE_CONFIG`` the same way.

The config, the state store and their libraries (pydantic, SQLAlchemy, Alembic) are imported
when a command needs them, not when the CLI starts: ``--help``, ``--version`` and shell
completion (which runs calbridge on every Tab) stay quick."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from bridge.errors import ConfigError

if TYPE_CHECKING:
    from bridge.config import Settings
    from bridge.state import StateStore

ConfigOpt = typer.Option(
    None,
    "--config",
    "-c",
    envvar="CALBRIDGE_CONFIG",
    metavar="CONFIG",
    help="The TOML config file.",
)
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")


def load_settings(config: Path | None) -> Settings:
    """The config named by ``-c`` / ``$CALBRIDGE_CONFIG``, or a clear error without one."""
    if config is None:
        raise ConfigError(
            "no config file: pass -c CONFIG or set CALBRIDGE_CONFIG (see config.example.toml)"
        )
    from bridge.config import load_config

    return load_config(config)


def default_state_url() -> str:
    """:func:`bridge.state.default_state_url`, imported on first use."""
    from bridge.state import default_state_url as default

    return default()


def open_state(url: str) -> StateStore:
    """:func:`bridge.state.open_state` (creates or upgrades the database), imported on use."""
    from bridge.state import open_state as open_

    return open_(url)
