"""Loading the configuration: a TOML file (or parsed data) into :class:`Settings`, every
problem one :class:`~bridge.errors.ConfigError` naming the key, e.g.
``config: accounts[1].poll_interval: "5 minutes" is not a duration (use e.g. 30s, 5m, 1h30m, 7d)``.
"""

from __future__ import annotations

import logging
import stat
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bridge.config.schema import Settings
from bridge.errors import ConfigError

log = logging.getLogger("bridge.config")


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "tagged-union")) or part in ("literal_error",):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def settings_from(data: dict[str, Any]) -> Settings:
    """Validate a parsed config (tests, the demo) into :class:`Settings` or a ConfigError."""
    try:
        return Settings(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key (see config.example.toml for the keys there are)"
        elif first["type"] == "missing":
            message = "this key is required"
        raise ConfigError(message, key=_location(first["loc"]) or None) from None


def permission_warnings(settings: Settings, config_path: str | Path | None) -> list[str]:
    """One line per config or secret file that the file's group or other users can read."""
    files: list[tuple[str, Path | None]] = [
        ("config file", Path(config_path) if config_path else None)
    ]
    files += [(f"accounts[{a.id}].token_file", a.token_file) for a in settings.accounts]
    files += [(f"caldav[{c.id}].password_file", c.password_file) for c in settings.caldav]
    files.append(("http.admin_token_file", settings.http.admin_token_file))
    warnings = []
    for key, file in files:
        if file is None:
            continue
        try:
            mode = stat.S_IMODE(Path(file).stat().st_mode)
        except OSError:
            continue  # a missing secret file is reported when it is read
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            warnings.append(
                f"{key}: {file} can be read by other users (mode {mode:04o}); run chmod 600 {file}"
            )
    return warnings


def warn_permissions(settings: Settings, config_path: str | Path | None) -> list[str]:
    """:func:`permission_warnings`, each logged as a warning."""
    warnings = permission_warnings(settings, config_path)
    for line in warnings:
        log.warning("%s", line)
    return warnings


def load_config(path: str | Path) -> Settings:
    """Read and validate a TOML config file. Every problem is a one-line ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return settings_from(data)
