"""The systemd unit as installed by the README: the service user can read what it needs, serves
feeds, logs with journald priorities, and a bad config stops it for good instead of looping.
The replica template calbridge@.service: hardened like the single unit, and two instances run
with the environment it gives them share one PostgreSQL, each on its own addresses."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.helpers.daemon import Running, feed_urls, wait_feed, write_config
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


TEMPLATE = REPO / "systemd" / "calbridge@.service"
# What the template sets differently from the single unit, on purpose (see its header).
REPLICA_ONLY = {
    "Description",
    "After",
    "User",
    "Environment",
    "EnvironmentFile",
    "LoadCredential",
    "StateDirectory",
    "StateDirectoryMode",
}


def _instance(tmp_path: Path, port: int) -> Path:
    """The template as systemd loads instance ``port`` (ExecStart pointing at this venv)."""
    local = tmp_path / f"calbridge@{port}.service"
    local.write_text(TEMPLATE.read_text().replace("/opt/calbridge/.venv", str(REPO / ".venv")))
    return local


def test_replica_template_is_hardened_like_the_single_unit(tmp_path: Path) -> None:
    local = _instance(tmp_path, 8765)
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=15", str(local)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert security.returncode == 0, security.stdout[-2000:]
    score = float(security.stdout.rsplit("Overall exposure level for", 1)[1].split()[1])
    assert score <= 1.5
    single, replica = unit_directives(UNIT), unit_directives(TEMPLATE)
    for key in (single.keys() | replica.keys()) - REPLICA_ONLY:
        assert single.get(key) == replica.get(key), key
    # no private state: a replica left on the default SQLite file must fail, not split off
    assert "StateDirectory" not in replica
    assert replica["User"] == ["calbridge"] and replica["DynamicUser"] == ["yes"]


def _unit_environment(port: int, credentials: Path) -> dict[str, str]:
    """The template's Environment= for instance ``port`` (%i, and %d the credentials)."""
    env: dict[str, str] = {}
    for value in unit_directives(TEMPLATE)["Environment"]:
        key, _, val = value.partition("=")
        env[key] = val.replace("%i", str(port)).replace("%d", str(credentials))
    return env


def _replica_port() -> int:
    """A free port of four digits whose admin port ("1%i") is free too."""
    for _ in range(200):
        port = random.randint(2000, 9999)
        try:
            for candidate in (port, 10000 + port):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free replica port")


def test_two_template_instances_share_postgresql_on_their_own_addresses(
    live_sim: Sim, tmp_path: Path, pg_url: str, start_daemon: Callable[..., Running]
) -> None:
    """The replica's config is the same file for both; only the unit's environment differs."""
    config = write_config(tmp_path, live_sim, free_port())
    text = config.read_text().replace(f'url = "sqlite:///{tmp_path / "state.sqlite3"}"', "")
    config.write_text(text.replace("[state]", f'[state]\nurl = "{pg_url}"', 1))
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "pgpass").write_text("*:*:*:calbridge:unused-with-trust-auth\n")
    (credentials / "pgpass").chmod(0o600)  # libpq ignores a pgpass file others can read
    replicas = []
    for _ in range(2):
        port = _replica_port()
        env = _unit_environment(port, credentials)
        assert env["CALBRIDGE_HTTP__LISTEN"] == f"127.0.0.1:{port}"
        replicas.append(start_daemon(config, port, env=env))
    path = "/feeds/" + feed_urls(config)["alice"].split("/feeds/", 1)[1]
    bodies = [wait_feed(replica.url + path) for replica in replicas]
    assert bodies[0].headers["etag"] == bodies[1].headers["etag"]
    for replica in replicas:
        port = int(replica.url.rsplit(":", 1)[1])
        health = httpx.get(f"http://127.0.0.1:{10000 + port}/healthz", timeout=30)
        assert health.status_code == 200, health.text
        assert replica.stop() == 0
