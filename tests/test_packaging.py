"""Packaging: the licence, one version, bounded dependencies, and the pins `make test` uses."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import bridge

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins(name: str) -> dict[str, Version]:
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            package, _, version = line.partition("==")
            found[canonicalize_name(package)] = Version(version.strip())
    return found


def test_licence_is_mit_as_an_spdx_expression() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 calbridge contributors" in text
    assert PROJECT["project"]["license"] == "MIT"
    assert "setuptools>=77" in PROJECT["build-system"]["requires"][0]
    metadata = importlib.metadata.metadata("calbridge")
    assert metadata["License-Expression"] == "MIT"
    assert not [c for c in PROJECT["project"]["classifiers"] if c.startswith("License ::")]
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
    assert urls["Source"].startswith("https://")


def test_one_version() -> None:
    declared = PROJECT["project"]["version"]
    assert importlib.metadata.version("calbridge") == declared == bridge.__version__
    source = "\n".join(p.read_text() for p in (ROOT / "bridge").rglob("*.py"))
    assert not re.search(r"__version__\s*=\s*['\"]\d+\.\d", source)  # no second, hand-kept copy


def test_every_runtime_dependency_has_both_bounds() -> None:
    for line in PROJECT["project"]["dependencies"]:
        spec = Requirement(line).specifier
        assert any(s.operator == ">=" for s in spec), line
        assert any(s.operator == "<" for s in spec), f"{line}: no upper bound"


def test_constraints_pin_every_dependency_within_its_bounds() -> None:
    pinned = pins("constraints.txt")
    assert "calbridge" not in pinned
    declared = (
        PROJECT["project"]["dependencies"] + PROJECT["project"]["optional-dependencies"]["dev"]
    )
    for line in declared:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is not pinned in constraints.txt (make lock)"
        assert requirement.specifier.contains(pinned[name]), f"{name}=={pinned[name]} vs {line}"


def test_make_test_installed_exactly_the_pins() -> None:
    """In the .venv that `make test` builds; other venvs (make test-latest) differ on purpose."""
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        return
    installed = {
        canonicalize_name(d.metadata["Name"]): Version(d.version)
        for d in importlib.metadata.distributions()
    }
    for name, version in pins("constraints.txt").items():
        assert installed.get(name) == version, f"{name}: installed {installed.get(name)}"


def test_lowest_pins_are_the_lower_bounds() -> None:
    lowest = pins("constraints-lowest.txt")
    assert set(lowest) == {"typer", "click"}
    for line in PROJECT["project"]["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name in lowest:
            floor = next(s.version for s in requirement.specifier if s.operator == ">=")
            assert lowest[name] == Version(floor), line


def test_make_test_installs_from_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(STAMP\): pyproject\.toml \$\(CONSTRAINTS\)$", makefile, re.M)
    assert "pip install -q -c $(CONSTRAINTS) -e '.[dev]'" in makefile
    assert re.search(r"^test: .*\btest-cli-lowest\b", makefile, re.M)
    for target in ("lock", "test-latest", "test-cli-lowest", "docs"):
        assert re.search(rf"^{target}:", makefile, re.M), target
