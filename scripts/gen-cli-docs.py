#!/usr/bin/env python3
"""Write man/calbridge.1 and the README's command reference from the CLI itself, and
config.example.toml from the configuration schema.

    python scripts/gen-cli-docs.py          # rewrite all three (make docs)
    python scripts/gen-cli-docs.py --check  # exit 1 and name the stale file if one is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

from bridge.cli.docs import man_page, markdown
from bridge.config.example import example_toml

ROOT = Path(__file__).resolve().parents[1]
MAN = ROOT / "man" / "calbridge.1"
README = ROOT / "README.md"
EXAMPLE = ROOT / "config.example.toml"
BEGIN = "<!-- cli-reference:begin -->"
END = "<!-- cli-reference:end -->"


def readme_with_reference(text: str) -> str:
    head, sep, rest = text.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"{README}: the markers {BEGIN} and {END} are missing")
    return f"{head}{BEGIN}\n{markdown()}{END}{tail}"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    wanted = {
        MAN: man_page(),
        README: readme_with_reference(README.read_text()),
        EXAMPLE: example_toml(),
    }
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    if check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run `make docs`", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(exist_ok=True)
        path.write_text(wanted[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
