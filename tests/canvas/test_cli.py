"""``calbridge canvas …`` end to end: a real subprocess against the simulator over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.sim import Sim


def run(
    sim: Sim, tmp_path: Path, *args: str, who: str = "alice", env_token: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CANVAS_", "CALBRIDGE_"))}
    base = ["canvas", "--url", sim.url]
    if env_token:
        env["CANVAS_TOKEN"] = sim.tokens[who]
    else:
        token_file = tmp_path / f"{who}.token"
        token_file.write_text(sim.tokens[who] + "\n")
        base += ["--token-file", str(token_file)]
    return subprocess.run(
        [sys.executable, "-m", "bridge", *base, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_whoami_table_and_json(sim: Sim, tmp_path: Path) -> None:
    out = run(sim, tmp_path, "whoami")
    assert out.returncode == 0, out.stderr
    assert "Alice Liddell" in out.stdout and out.stdout.startswith("ID")
    out = run(sim, tmp_path, "whoami", "--json", env_token=True)
    assert json.loads(out.stdout)["name"] == "Alice Liddell"


def test_groups_reserve_and_cancel(sim: Sim, tmp_path: Path) -> None:
    listed = json.loads(run(sim, tmp_path, "groups", "list", "--json", who="bob").stdout)
    office = next(g for g in listed if g["title"] == "Office hours")
    free = next(s for s in office["appointments"] if s.get("available_slots"))
    swapped = run(
        sim,
        tmp_path,
        "reserve",
        "--json",
        str(free["id"]),
        "--cancel-existing",
        "--comments",
        "moved",
        who="bob",
    )
    assert swapped.returncode == 0, swapped.stderr
    reservation = json.loads(swapped.stdout)
    assert reservation["parent_event_id"] == free["id"]
    refused = run(sim, tmp_path, "reserve", str(free["id"]), who="carol")
    assert refused.returncode != 0
    # Carol already holds a (past) office-hours booking: Canvas checks the per-participant limit first.
    assert (
        "participant has met per-participant limit" in refused.stderr
        and refused.stderr.count("\n") == 1
    )
    cancelled = run(
        sim, tmp_path, "cancel", str(reservation["id"]), "--reason", "no longer needed", who="bob"
    )
    assert cancelled.returncode == 0 and "deleted" in cancelled.stdout


def test_teacher_creates_and_inspects_a_group(sim: Sim, tmp_path: Path) -> None:
    created = run(
        sim,
        tmp_path,
        "groups",
        "create",
        "--json",
        "--context",
        "course_1",
        "--title",
        "Viva",
        "--slot",
        "2026-04-01T10:00Z/2026-04-01T10:30Z",
        "--slot",
        "2026-04-01T10:30Z/2026-04-01T11:00Z",
        "--per-slot",
        "1",
        "--publish",
        who="teacher",
    )
    assert created.returncode == 0, created.stderr
    group = json.loads(created.stdout)
    assert group["workflow_state"] == "active" and len(group["new_appointments"]) == 2
    shown = run(sim, tmp_path, "groups", "show", str(group["id"]), who="teacher")
    assert shown.stdout.count("2026-04-01") == 4
    users = run(sim, tmp_path, "groups", "users", str(group["id"]), who="teacher")
    assert "Bob Dylan" in users.stdout
    confs = run(sim, tmp_path, "conferences", "--course", "1", who="teacher")
    assert "Lecture 5: Recursion" in confs.stdout
    bad = run(
        sim,
        tmp_path,
        "groups",
        "create",
        "--context",
        "course_1",
        "--title",
        "X",
        "--slot",
        "tomorrow",
        who="teacher",
    )
    assert bad.returncode == 2 and "--slot 'tomorrow'" in bad.stderr


def test_bad_token_is_one_clear_line_without_the_token(sim: Sim, tmp_path: Path) -> None:
    token_file = tmp_path / "bad.token"
    token_file.write_text("secret-bad-token-1234")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge",
            "canvas",
            "--url",
            sim.url,
            "--token-file",
            str(token_file),
            "whoami",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 6
    assert (
        out.stderr.strip()
        == "calbridge: GET /api/v1/users/self: Canvas does not accept this token (invalid access token) (HTTP 401)"
    )
    assert "secret-bad-token-1234" not in out.stdout + out.stderr


def test_missing_credentials_say_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CANVAS_", "CALBRIDGE_"))}
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "canvas", "whoami"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2 and "no Canvas URL" in out.stderr


def test_a_malformed_url_names_the_option_it_came_from(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CANVAS_", "CALBRIDGE_"))}
    env["CANVAS_TOKEN"] = "secret-token-never-printed"
    for args, extra, source in (
        (["--url", "canvas.example.edu"], {}, "--url"),
        ([], {"CANVAS_URL": "https://canvas.example.edu/?x=1"}, "CANVAS_URL"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "bridge", "canvas", *args, "whoami"],
            capture_output=True,
            text=True,
            env={**env, **extra},
            timeout=60,
        )
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith(f"calbridge: {source}: "), out.stderr
        assert out.stderr.count("\n") == 1 and "secret-token" not in out.stderr


def test_every_canvas_command_has_its_own_json_option() -> None:
    """``--json`` belongs to the commands that print data, not to the ``canvas`` group."""
    from bridge.cli.docs import commands

    docs = {doc.path: doc for doc in commands()}
    canvas = [path for path in docs if path.startswith("calbridge canvas ")]
    assert len(canvas) >= 12
    for path in canvas:
        options = [opt for opt, _ in docs[path].params]
        assert ("--json" in options) != bool(docs[path].subcommands), path
    assert "--json" not in [opt for opt, _ in docs["calbridge canvas"].params]
    for path in ("calbridge check", "calbridge feeds", "calbridge writebacks", "calbridge sync"):
        assert "--json" in [opt for opt, _ in docs[path].params], path
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "canvas", "--json", "whoami"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "No such option: --json" in out.stderr


def test_config_comes_from_calbridge_config_like_the_other_commands(
    sim: Sim, tmp_path: Path
) -> None:
    (tmp_path / "teacher.token").write_text(sim.tokens["teacher"])
    config = tmp_path / "config.toml"
    config.write_text(f"""
[[accounts]]
id = "teacher"
canvas_url = "{sim.url}"
token_file = "{tmp_path / "teacher.token"}"
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CANVAS_", "CALBRIDGE_"))}
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "canvas", "whoami", "--json"],
        capture_output=True,
        text=True,
        env={**env, "CALBRIDGE_CONFIG": str(config)},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["name"] == "Grace Hopper"
    # An explicit --token-file still wins over the config from the environment.
    (tmp_path / "alice.token").write_text(sim.tokens["alice"])
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge",
            "canvas",
            "--token-file",
            str(tmp_path / "alice.token"),
            "whoami",
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**env, "CALBRIDGE_CONFIG": str(config)},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["name"] == "Alice Liddell"
