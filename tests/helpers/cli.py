"""Run the real ``calbridge``: the console script or ``python -m bridge``, as a subprocess.

``CALBRIDGE_CLI_PYTHON`` names the interpreter of another virtualenv (``make test-cli-lowest``
sets it to the one with the lowest typer and click the bounds allow); by default the tests run
the CLI of the interpreter running them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI_PYTHON = os.environ.get("CALBRIDGE_CLI_PYTHON", sys.executable)


CONSOLE_SCRIPT = str(Path(CLI_PYTHON).parent / "calbridge")


ENTRY_POINTS = {"console-script": [CONSOLE_SCRIPT], "python-m": [CLI_PYTHON, "-m", "bridge"]}


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without calbridge's or Canvas's variables (a fresh shell), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALBRIDGE_", "CANVAS_"))}
    env.update(COLUMNS="100", **extra)
    return env


def calbridge(
    *args: str,
    entry: str = "console-script",
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ENTRY_POINTS[entry], *args],
        capture_output=True,
        text=True,
        env=clean_env() if env is None else env,
        timeout=timeout,
    )
