"""The layers of README "How the code is organised" are enforced: `make lint` runs lint-imports.

Each case copies the package into a temporary directory, adds one import that crosses the
written layers, runs the real ``lint-imports`` there and checks that it fails naming exactly that
import (module, target and line); the real tree passes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # COLUMNS: rich wraps the report at the terminal width; wide, each import stays on one line.
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1", "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_the_tree(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "bridge", tmp_path / "bridge", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_real_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken." in result.stdout
    for contract in ("Layers:", "simulator", "No import cycles"):
        assert contract in result.stdout


CROSSINGS = [
    # the pure core reaching into an adapter
    pytest.param(
        "bridge/mapping/feed.py",
        "bridge.dav.webdav",
        "bridge.mapping is not allowed to import bridge.dav",
        id="mapping-imports-dav",
    ),
    # an adapter reading the config instead of taking an option object
    pytest.param(
        "bridge/web/links.py",
        "bridge.config",
        "bridge.web is not allowed to import bridge.config",
        id="adapter-imports-config",
    ),
    # adapters are independent of each other
    pytest.param(
        "bridge/canvas/poller.py",
        "bridge.state.store",
        "bridge.canvas is not allowed to import bridge.state",
        id="adapter-imports-adapter",
    ),
    # the records at the bottom import nothing above them
    pytest.param(
        "bridge/model/event.py",
        "bridge.mapping.text",
        "bridge.model is not allowed to import bridge.mapping",
        id="model-imports-mapping",
    ),
    # an adapter reaching up into the sync layer
    pytest.param(
        "bridge/dav/remote.py",
        "bridge.sync.plan",
        "bridge.dav is not allowed to import bridge.sync",
        id="dav-imports-sync",
    ),
    # the simulator stands apart: Canvas records only
    pytest.param(
        "bridge/simulator/world.py",
        "bridge.canvas.client",
        "bridge.simulator is not allowed to import bridge.canvas",
        id="simulator-imports-canvas",
    ),
    # … and no other record than those (the contract forbids all of bridge.model but canvas)
    pytest.param(
        "bridge/simulator/world.py",
        "bridge.model.event",
        "bridge.simulator is not allowed to import bridge.model",
        id="simulator-imports-model-event",
    ),
    # and only the CLI starts it
    pytest.param(
        "bridge/daemon/service.py",
        "bridge.simulator.app",
        "bridge.daemon is not allowed to import bridge.simulator",
        id="daemon-imports-simulator",
    ),
]


@pytest.mark.parametrize(("module_file", "target", "verdict"), CROSSINGS)
def test_one_crossing_import_breaks_make_lint(
    tmp_path: Path, module_file: str, target: str, verdict: str
) -> None:
    root = copy_of_the_tree(tmp_path)
    path = root / module_file
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, f"import {target}  # crosses a layer"]) + "\n")
    importer = module_file.removesuffix(".py").replace("/", ".")

    result = lint_imports(root)

    assert result.returncode == 1, result.stdout + result.stderr
    report = " ".join(result.stdout.split())
    assert verdict in report, result.stdout
    assert f"- {importer} -> {target} (l.{len(lines) + 1})" in report, result.stdout


def test_an_import_cycle_between_siblings_breaks_make_lint(tmp_path: Path) -> None:
    # The cycle the simulator had: the rules rendering their own error bodies through serialize.
    root = copy_of_the_tree(tmp_path)
    path = root / "bridge/simulator/rules.py"
    path.write_text(path.read_text() + "import bridge.simulator.serialize  # a cycle\n")

    result = lint_imports(root)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "No cycles are allowed in bridge.simulator." in result.stdout
    # lint-imports names the dependency that, removed, would break the cycle
    assert "- .serialize -> .rules (1 import)" in result.stdout, result.stdout
