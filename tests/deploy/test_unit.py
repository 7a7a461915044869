"""The systemd unit as installed by the README: the service user can read what it needs, serves
feeds, logs with journald priorities, and a bad config stops it for good instead of looping."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import free_port, radicale
from tests.helpers.service import (
    PRIORITY_LINE,
    REPO,
    UNIT,
    readme_install_steps,
    service_tree,
    unit_directives,
)
from tests.helpers.sim import Sim
from tests.helpers.validators import assert_valid

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="switching to the service user needs root (CI runs as root)"
)


@needs_root
def test_installed_unit_serves_feeds_as_an_unprivileged_user(live_sim: Sim, tmp_path: Path) -> None:
    port = free_port()
    with radicale(tmp_path / "radicale") as dav, service_tree() as tree:
        secrets = {"alice": live_sim.tokens["alice"], "alice-dav": dav.password}
        config = tree.install_example(live_sim.url, port, dav.url, secrets)
        assert config.stat().st_uid == 0  # root's file, read by the service user
        peek = [*tree.as_service_user(), "cat", str(tree.path("/etc/calbridge/credentials/alice"))]
        denied = subprocess.run(peek, capture_output=True, text=True, timeout=30)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr  # root's secrets
        with tree.start() as service:
            service.wait_for("READY=1")
            path = tree.feed_path(config)
            feed = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=30)
            assert feed.status_code == 200 and assert_valid(feed.text) >= 1
            # /healthz on the admin listener config.example.toml keeps on loopback; the feed
            # listener has none.
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 404
            # The account's poll is recorded before the push to CalDAV ends, the target after it.
            deadline = time.monotonic() + 60
            while (
                "caldav:alice-phone"
                not in (health := httpx.get(f"{tree.admin_url}/healthz").json())["components"]
            ):
                assert time.monotonic() < deadline, health
                time.sleep(0.2)
            assert health["components"]["account:alice"]["status"] == "ok", health
            assert health["components"]["caldav:alice-phone"]["status"] == "ok", health
            metrics = httpx.get(f"{tree.admin_url}/metrics").text  # what Prometheus scrapes
            assert 'calbridge_polls_total{account="alice",outcome="ok"}' in metrics
            code, stderr = service.stop_and_read()
        assert code == 0, stderr
        state = tree.path("/var/lib/calbridge/state.sqlite3")
        assert state.stat().st_uid == tree.uid and state.stat().st_mode & 0o077 == 0  # UMask
    lines = [line for line in stderr.splitlines() if line]
    assert lines and all(PRIORITY_LINE.match(line) for line in lines), lines[:5]
    assert any(line.startswith("<6>") for line in lines)
    for secret in (live_sim.tokens["alice"], dav.password, path.rsplit("/", 1)[-1]):
        assert secret not in stderr


def _prevented_exit_codes() -> set[int]:
    unit = unit_directives()
    return {int(code) for value in unit["RestartPreventExitStatus"] for code in value.split()}


@needs_root
def test_bad_config_exits_with_a_status_that_stops_restarts() -> None:
    """Restart=on-failure would restart a broken config every RestartSec forever; the exit code
    of a config error must be one of RestartPreventExitStatus=."""
    with service_tree() as tree:
        tree.install({"alice": "x" * 20, "alice-dav": "y" * 20}, {})
        config = tree.path("/etc/calbridge/config.toml")
        config.write_text(config.read_text().replace('poll_interval = "5m"', 'poll_interval = "5"'))
        with tree.start() as service:
            code, stderr = service.stop_and_read(timeout=60, terminate=False)
    assert code == 3 and code in _prevented_exit_codes(), stderr
    # Printed by the CLI's error boundary, not through logging: no <N> prefix, so journald
    # files it at the unit's SyslogLevel=, which must make it an error.
    (line,) = [line for line in stderr.splitlines() if "accounts[0].poll_interval" in line]
    assert not PRIORITY_LINE.match(line) and unit_directives()["SyslogLevel"] == ["err"]


@needs_root
def test_unreadable_config_names_the_file_and_stops_restarts() -> None:
    """What the README used to install (config 0600 root) must fail loudly, not loop."""
    with service_tree() as tree:
        tree.install({"alice": "x" * 20, "alice-dav": "y" * 20}, {})
        tree.path("/etc/calbridge/config.toml").chmod(0o600)
        with tree.start() as service:
            code, stderr = service.stop_and_read(timeout=60, terminate=False)
    assert code in _prevented_exit_codes(), stderr
    # the command line refuses it before reading (click's check of --config)
    assert re.search(r"config\.toml' is not readable\.$", stderr, re.M), stderr


def test_readme_installs_no_secret_where_the_service_user_could_read_it() -> None:
    steps = {step.dest: step for step in readme_install_steps()}
    assert steps["/etc/calbridge/config.toml"].mode == 0o644
    assert steps["/etc/calbridge/credentials"].directory
    assert steps["/etc/calbridge/credentials"].mode == 0o700
    secrets = [s for s in steps.values() if s.dest.startswith("/etc/calbridge/credentials/")]
    assert secrets and all(s.mode == 0o600 for s in secrets)
    # Every credential the unit loads is one the README installs, and the example config names.
    example = (REPO / "config.example.toml").read_text()
    for spec in unit_directives()["LoadCredential"]:
        name, _, source = spec.partition(":")
        assert source == f"/etc/calbridge/credentials/{name}"
        assert f'_credential = "{name}"' in example


def test_unit_verifies_and_bounds_its_resources(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit (the security score is checked in
    tests/daemon/test_daemon.py); the resource limits are set."""
    local = tmp_path / "calbridge.service"  # verify wants ExecStart to exist: this venv's
    local.write_text(UNIT.read_text().replace("/opt/calbridge/.venv", str(REPO / ".venv")))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    unit = unit_directives()
    assert int(unit["LimitNOFILE"][0]) >= 1024
    assert unit["MemoryMax"][0].endswith(("M", "G")) and int(unit["TasksMax"][0]) >= 16
