"""Reading Canvas-style request parameters: Rails bracket keys from forms, queries or JSON.

Canvas accepts ``appointment_group[title]=…`` and ``appointment_group[new_appointments][0][]=…``
as form fields, query parameters or the equivalent nested JSON. Everything is flattened to
``(key, value)`` pairs in the bracket form so handlers read one shape.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from bridge.simulator.rules import SimError

TRUE_VALUES = {"1", "true", "t", "yes", "on"}


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}[{key}]" if prefix else str(key), inner, out)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            if isinstance(inner, list | dict):
                _flatten(f"{prefix}[{index}]", inner, out)
            else:
                _flatten(f"{prefix}[]", inner, out)
    elif value is None:
        out.append((prefix, ""))
    elif isinstance(value, bool):
        out.append((prefix, "true" if value else "false"))
    else:
        out.append((prefix, str(value)))


class Params:
    """All parameters of a request (query + body) as ordered bracket-key pairs."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    @classmethod
    async def read(cls, request: Request) -> Params:
        pairs = list(request.query_params.multi_items())
        if request.method in ("POST", "PUT", "DELETE"):
            ctype = request.headers.get("content-type", "")
            if ctype.startswith("application/json"):
                try:
                    body = json.loads(await request.body() or b"{}")
                except ValueError as exc:
                    raise SimError(400, {"errors": [{"message": "invalid JSON body"}]}) from exc
                _flatten("", body, pairs)
            elif ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
                form = await request.form()
                pairs.extend((k, v) for k, v in form.multi_items() if isinstance(v, str))
        return cls(pairs)

    def get(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.pairs:
            if k == key:
                return v
        return default

    def getlist(self, key: str) -> list[str]:
        return [v for k, v in self.pairs if k == key]

    def has(self, key: str) -> bool:
        return any(k == key for k, _ in self.pairs)

    def flag(self, key: str) -> bool:
        """Rails ``value_to_boolean``."""
        return (self.get(key) or "").strip().lower() in TRUE_VALUES

    def int_or_none(self, key: str) -> int | None:
        raw = self.get(key)
        if raw is None or raw == "":
            return None
        try:
            return int(raw)
        except ValueError as exc:
            raise SimError(
                400,
                {
                    "errors": {
                        key: [{"attribute": key, "type": "invalid", "message": "is not a number"}]
                    }
                },
            ) from exc

    def nested_pairs(self, prefix: str) -> list[list[str]]:
        """``prefix[0][]=a&prefix[0][]=b&prefix[1][]=…`` → ``[[a, b], …]``, in index order."""
        groups: dict[str, list[str]] = {}
        for k, v in self.pairs:
            if k.startswith(prefix + "[") and k.endswith("][]"):
                index = k[len(prefix) + 1 : -3]
                groups.setdefault(index, []).append(v)
        return [groups[i] for i in sorted(groups, key=lambda s: int(s) if s.isdigit() else 0)]
