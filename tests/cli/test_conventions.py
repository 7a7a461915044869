"""The command line's conventions, checked on the real console script and ``python -m bridge``.

Click's conventions whichever click typer runs on (typer < 0.26 uses the ``click`` package,
newer typer bundles its own): a usage error prints the usage line and names the offending
option or argument on stderr and exits 2; ``--version``; no arguments prints help and exits 0;
calbridge's own errors are one line on stderr with their exit code. ``make test-cli-lowest``
runs this file against the lowest typer and click that pyproject.toml allows.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.helpers.cli import CLI_PYTHON, CONSOLE_SCRIPT, ENTRY_POINTS, calbridge, clean_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(
    ("args", "usage", "names"),
    [
        (["sync", "--dryrun"], "Usage: calbridge sync [OPTIONS]", ["No such option", "--dryrun"]),
        (["render"], "Usage: calbridge render [OPTIONS]", ["Missing argument", "FEED"]),
        (["frobnicate"], "Usage: calbridge [OPTIONS] COMMAND", ["No such command", "frobnicate"]),
        (
            ["canvas", "reserve", "abc"],
            "Usage: calbridge canvas reserve [OPTIONS]",
            ["Invalid value for", "SLOT"],
        ),
        (["sync", "--wait", "soon"], "Usage: calbridge sync", ["Invalid value", "--wait"]),
        (["canvas", "groups", "show"], "Usage: calbridge canvas groups show", ["GROUP"]),
        (["--frob"], "Usage: calbridge [OPTIONS]", ["No such option", "--frob"]),
    ],
)
def test_usage_errors_exit_2_with_usage_and_the_offender(
    entry: str, args: list[str], usage: str, names: list[str]
) -> None:
    out = calbridge(*args, entry=entry)
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    assert usage in out.stderr, out.stderr
    for name in names:
        assert name in out.stderr, out.stderr
    assert "internal error" not in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_version_is_the_package_version(entry: str) -> None:
    metadata = subprocess.run(
        [CLI_PYTHON, "-c", "import importlib.metadata as m; print(m.version('calbridge'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    out = calbridge("--version", entry=entry)
    assert (out.returncode, out.stdout, out.stderr) == (0, f"calbridge {declared}\n", "")
    assert metadata == declared


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(
    ("args", "usage"),
    [
        ([], "Usage: calbridge [OPTIONS] COMMAND [ARGS]..."),
        (["canvas"], "Usage: calbridge canvas [OPTIONS] COMMAND [ARGS]..."),
        (["canvas", "groups"], "Usage: calbridge canvas groups [OPTIONS] COMMAND [ARGS]..."),
        (["--help"], "Usage: calbridge [OPTIONS] COMMAND [ARGS]..."),
        (["sync", "-h"], "Usage: calbridge sync [OPTIONS]"),
    ],
)
def test_no_arguments_or_help_prints_help_and_exits_0(
    entry: str, args: list[str], usage: str
) -> None:
    out = calbridge(*args, entry=entry)
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    assert out.stdout.startswith(usage), out.stdout
    assert "Options:" in out.stdout


def test_group_help_lists_the_commands() -> None:
    listed = calbridge().stdout
    for command in ("run", "sync", "render", "check", "feeds", "writebacks", "demo", "canvas"):
        assert f"\n  {command} " in listed, listed
    assert "\n  man " not in listed  # the man page generator is hidden


def test_help_shows_no_bool_metavar_and_keeps_brackets() -> None:
    """No ``--dry-run <bool>``; ``[logging]`` is not eaten as rich markup."""
    sync = calbridge("sync", "--help").stdout
    assert "--dry-run " in sync and "<bool>" not in sync and "--account ID" in sync
    run = calbridge("run", "--help").stdout
    assert "(overrides format in [logging])" in run, run


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_bridge_errors_are_one_line_with_their_exit_code(entry: str, tmp_path: Path) -> None:
    out = calbridge("sync", entry=entry)
    assert out.returncode == 3
    assert out.stderr == (
        "calbridge: config: no config file: pass -c CONFIG or set CALBRIDGE_CONFIG "
        "(see config.example.toml)\n"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("[http]\nlisten = 'nowhere'\n")
    out = calbridge("check", env=clean_env(CALBRIDGE_CONFIG=str(bad)), entry=entry)
    assert out.returncode == 3 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("calbridge: config: http.listen: 'nowhere' is not host:port")


def test_shell_completion_is_enabled() -> None:
    # The shell is detected from the parent process (older typer takes no shell argument), so
    # bash runs it; "; true" keeps bash from exec'ing calbridge in its own place.
    script = subprocess.run(
        ["bash", "-c", f"{CONSOLE_SCRIPT} --show-completion; true"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert "_CALBRIDGE_COMPLETE=complete_bash" in script.stdout, script.stderr
    completed = calbridge(
        env=clean_env(
            _CALBRIDGE_COMPLETE="complete_bash", COMP_WORDS="calbridge sy", COMP_CWORD="1"
        )
    )
    assert (completed.returncode, completed.stdout.split()) == (0, ["sync"])
    options = calbridge(
        env=clean_env(
            _CALBRIDGE_COMPLETE="complete_bash", COMP_WORDS="calbridge sync --dr", COMP_CWORD="2"
        )
    )
    assert options.stdout.split() == ["--dry-run"]


def test_startup_imports_no_heavy_library() -> None:
    """Completion runs calbridge on every Tab: the CLI must start without the database, HTTP or
    server libraries, which the commands import when they run."""
    probe = (
        "import sys; from bridge.cli import _register; _register(); "
        "print(' '.join(m for m in ('sqlalchemy', 'alembic', 'httpx', 'uvicorn', 'starlette', "
        "'caldav', 'icalendar') if m in sys.modules))"
    )
    out = subprocess.run([CLI_PYTHON, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
