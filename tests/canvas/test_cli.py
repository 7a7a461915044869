"""``calbridge canvas …`` end to end: a real subprocess against the simulator over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import Sim


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
    out = run(sim, tmp_path, "--json", "whoami", env_token=True)
    assert json.loads(out.stdout)["name"] == "Alice Liddell"


def test_groups_reserve_and_cancel(sim: Sim, tmp_path: Path) -> None:
    listed = json.loads(run(sim, tmp_path, "--json", "groups", "list", who="bob").stdout)
    office = next(g for g in listed if g["title"] == "Office hours")
    free = next(s for s in office["appointments"] if s.get("available_slots"))
    swapped = run(
        sim,
        tmp_path,
        "--json",
        "reserve",
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
        "--json",
        "groups",
        "create",
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
