"""Backup and restore of the SQLite state as the README tells an operator to do it: an online
`sqlite3 … ".backup …"` by root while the service runs (as its own user), then a restore into a
fresh state directory that serves the same feeds, byte for byte, under the same secret URLs."""

from __future__ import annotations

import os
import shlex
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import free_port, radicale
from tests.helpers.service import README, ServiceTree, service_tree
from tests.helpers.sim import Sim

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="switching to the service user needs root (CI runs as root)"
)

STATE = "/var/lib/calbridge/state.sqlite3"
BACKUP = "/var/backups/calbridge/state.sqlite3"


def _readme_commands(tree: ServiceTree, block: int) -> list[list[str]]:
    """The README's backup (block 0) or restore (block 1) commands, absolute paths mapped into
    the scratch root; the systemctl lines are what the test does itself (stop, start)."""
    section = README.read_text().split("### Backup and restore", 1)[1].split("\n## ", 1)[0]
    lines = section.split("```sh\n")[block + 1].split("```", 1)[0].splitlines()
    commands = []
    for raw in lines:
        line = raw.split("  #", 1)[0].strip()
        if not line or line.startswith("systemctl "):
            continue
        argv = [
            str(tree.path(a)) if a.startswith("/") else a.replace(BACKUP, str(tree.path(BACKUP)))
            for a in shlex.split(line)
        ]
        commands.append(argv)
    assert commands, README
    return commands


def _run_as_root(commands: list[list[str]]) -> None:
    for argv in commands:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, (argv, out.stdout, out.stderr)


def test_online_backup_restores_the_same_feeds_under_the_same_urls(
    live_sim: Sim, tmp_path: Path
) -> None:
    with radicale(tmp_path / "radicale") as dav, service_tree() as old, service_tree() as new:
        secrets = {"alice": live_sim.tokens["alice"], "alice-dav": dav.password}
        port = free_port()
        config = old.install_example(live_sim.url, port, dav.url, secrets)
        with old.start() as service:
            service.wait_for("READY=1")
            path = old.feed_path(config)
            before = httpx.get(f"http://127.0.0.1:{port}{path}")
            assert before.status_code == 200
            old.path(BACKUP).parent.mkdir(parents=True)
            _run_as_root(_readme_commands(old, 0))  # online, as root
            # The service (not root) can still write its state after root read it.
            sync = old.run_as_service_user("sync", "-c", str(config))
            assert sync.returncode == 0, sync.stderr
            code, stderr = service.stop_and_read()
            assert code == 0, stderr
        backup = old.path(BACKUP)
        with sqlite3.connect(backup) as con:
            assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)

        # A new machine: same install, started once (a new, empty state), stopped, the backup
        # restored; then Canvas is unreachable, so what it serves can only come from the backup.
        port = free_port()
        config = new.install_example(live_sim.url, port, dav.url, secrets)
        with new.start() as service:
            service.wait_for("READY=1")
            assert new.feed_path(config) != path
            assert service.stop_and_read()[0] == 0
        new.path(BACKUP).parent.mkdir(parents=True)
        new.path(BACKUP).write_bytes(backup.read_bytes())
        _run_as_root(_readme_commands(new, 1))
        live_sim.world.faults.add("status", count=None, status=503)
        with new.start() as service:
            service.wait_for("READY=1")
            assert new.feed_path(config) == path
            after = httpx.get(f"http://127.0.0.1:{port}{path}")
            assert after.status_code == 200 and after.content == before.content
            assert after.headers["etag"] == before.headers["etag"]
            code, stderr = service.stop_and_read()
        assert code == 0, stderr
        assert new.path(STATE).stat().st_uid == new.uid  # handed back to the service user
