"""``config.example.toml``, written from the schema: every section and key, its help as a
comment and its default (or, for a key without one, an example value). ``make docs`` writes the
file; a test checks that the committed one is what this produces, so the two cannot drift.
"""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bridge.config.schema import Settings

WIDTH = 96

HEADER = """\
calbridge configuration, generated from the schema (bridge/config/schema.py) by `make docs`:
every key with its help and its default; a key without a default shows an example value.

Secrets are never written here: each token/password comes from a file (*_file), a systemd
credential (*_credential, a name under $CREDENTIALS_DIRECTORY, see LoadCredential= in
systemd/calbridge.service) or an environment variable (*_env). Exactly one per secret.

Every scalar key can be overridden from the environment: CALBRIDGE_<SECTION>__<KEY>, e.g.
CALBRIDGE_HTTP__LISTEN=0.0.0.0:8765 or CALBRIDGE_LOGGING__LEVEL=debug. The lists
([[accounts]], [[feeds]], [[caldav]]) can be replaced whole with JSON, e.g.
CALBRIDGE_ACCOUNTS='[{"id": "alice", ...}]'. Unknown keys are errors.
Durations are written like "30s", "5m", "1h30m", "7d".
"""


def format_duration(value: timedelta) -> str:
    """``timedelta(hours=1, minutes=30)`` → ``"1h30m"``: what :func:`parse_duration` reads."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return json.dumps(format_duration(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list | tuple | frozenset | set):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _comment(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(
        text, WIDTH, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}# "
    ) or [f"{indent}#"]


def _default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return None if info.default is PydanticUndefined else info.default


def _key_lines(name: str, info: FieldInfo) -> list[str]:
    required = info.is_required()
    help_text = (info.description or "") + (" Required." if required else "")
    lines = _comment(help_text.strip())
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    value = info.examples[0] if info.examples else _default(info)
    if value is None:
        lines.append(f"# {name} =  (not set by default)")
        return lines
    line = f"{name} = {toml_value(value)}"
    lines.append(f"# {line}" if extra.get("commented") else line)
    return lines


def _section(name: str, model: type[BaseModel], many: bool) -> list[str]:
    doc = (model.__doc__ or "").strip().splitlines()[0]
    lines = [*_comment(doc), f"[[{name}]]" if many else f"[{name}]"]
    for key, info in model.model_fields.items():
        lines += _key_lines(key, info)
    return lines


def example_toml() -> str:
    """The text of ``config.example.toml``."""
    out = [line.rstrip() for line in _comment_block(HEADER)]
    for name, info in Settings.model_fields.items():
        annotation = info.annotation
        many = getattr(annotation, "__origin__", None) is list
        model = annotation.__args__[0] if many else annotation  # type: ignore[union-attr]
        assert isinstance(model, type) and issubclass(model, BaseModel)
        out += ["", *_section(name, model, many)]
    return "\n".join(out) + "\n"


def _comment_block(text: str) -> list[str]:
    return [f"# {line}" if line else "#" for line in text.splitlines()]
