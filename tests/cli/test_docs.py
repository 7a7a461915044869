"""The man page and the README's command reference are generated from the CLI, up to date, and
list exactly what the real ``--help`` shows; the man page renders without warnings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import bridge.errors
from bridge.cli import EXIT_INTERNAL, _register, app
from bridge.cli.docs import EXIT_CODES, commands
from bridge.cli.sync_output import (
    EXIT_BOTH_FAILED,
    EXIT_BUSY,
    EXIT_POLL_FAILED,
    EXIT_PUSH_FAILED,
    EXIT_SAFETY_STOP,
)

ROOT = Path(__file__).resolve().parents[2]
OPTION_LINE = re.compile(r"^  ((?:-\w, )?--[\w-]+)", re.M)


def real_help(path: str, capsys: pytest.CaptureFixture[str]) -> str:
    _register()
    args = [*path.split()[1:], "--help"]
    typer.main.get_command(app).main(args, prog_name="calbridge", standalone_mode=False)
    return capsys.readouterr().out


def readme_sections() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    reference = text.split("<!-- cli-reference:begin -->", 1)[1].split(
        "<!-- cli-reference:end -->"
    )[0]
    parts = re.split(r"^#### `(calbridge[^`]*)`$", reference, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_generated_docs_are_up_to_date() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-cli-docs.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


def test_readme_lists_every_option_the_real_help_shows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sections = readme_sections()
    docs = list(commands())
    assert {d.path for d in docs} == set(sections)
    assert len(docs) >= 20
    for doc in docs:
        shown = OPTION_LINE.findall(real_help(doc.path, capsys))
        assert shown, doc.path
        listed = re.findall(r"^\| `((?:-\w, )?--[\w-]+)", sections[doc.path], re.M)
        assert shown == listed, doc.path
    for flag in ("--wait", "--limit", "--target", "--poll-interval", "--port", "--json"):
        assert f"`{flag}" in "".join(sections.values()), flag


def test_help_has_no_type_placeholders_for_flags(capsys: pytest.CaptureFixture[str]) -> None:
    for doc in commands():
        text = real_help(doc.path, capsys)
        assert "<bool>" not in text, doc.path
        for opt, _ in doc.params:  # value options name their value: --wait SECONDS
            if opt.startswith("-"):
                assert "<" not in opt, (doc.path, opt)


def test_every_exit_status_is_documented() -> None:
    documented = {code for code, _ in EXIT_CODES}
    raised = {
        cls.exit_code
        for cls in vars(bridge.errors).values()
        if isinstance(cls, type) and issubclass(cls, bridge.errors.BridgeError)
    }
    sync = {EXIT_POLL_FAILED, EXIT_PUSH_FAILED, EXIT_BOTH_FAILED, EXIT_BUSY, EXIT_SAFETY_STOP}
    assert raised | sync | {0, 1, 2, EXIT_INTERNAL} <= documented
    readme = (ROOT / "README.md").read_text()
    man = (ROOT / "man" / "calbridge.1").read_text()
    for code in documented:
        assert f"\n| {code} | " in readme and f"\n.TP\n\\fB{code}\\fR\n" in man, code


@pytest.mark.skipif(shutil.which("man") is None, reason="man-db is not installed")
def test_man_page_renders_without_warnings() -> None:
    out = subprocess.run(
        ["man", "-l", str(ROOT / "man" / "calbridge.1")],
        capture_output=True,
        text=True,
        env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "100", "LC_ALL": "C.UTF-8"},
        timeout=60,
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr
    for heading in ("NAME", "SYNOPSIS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT"):
        assert f"\n{heading}\n" in out.stdout
    assert "calbridge canvas groups create [OPTIONS]" in out.stdout
    assert "--dry-run" in out.stdout.replace("‐", "-")
