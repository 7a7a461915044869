"""The [cluster] section's rule and checks, and `calbridge cluster status` outside cluster mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import settings_from
from bridge.errors import ConfigError
from tests.helpers.replicas import REPO


def test_cluster_mode_is_off_by_default_even_on_postgresql() -> None:
    settings = settings_from({"state": {"url": "postgresql+psycopg://calbridge@db/calbridge"}})
    assert not settings.cluster.enabled


def test_cluster_mode_needs_postgresql() -> None:
    with pytest.raises(ConfigError, match=r"cluster\.enabled needs \[state\] url on PostgreSQL"):
        settings_from({"cluster": {"enabled": True}})
    with pytest.raises(ConfigError, match="PostgreSQL"):
        settings_from({"state": {"url": "sqlite:////tmp/x.sqlite3"}, "cluster": {"enabled": True}})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("dispatch_every", "7s", "dispatch_every must divide a minute"),
        ("heartbeat", "2m", "heartbeat must be between 1s and 1m"),
        ("stalled_after", "5s", "stalled_after must be at least 3 heartbeats"),
        ("concurrency", 0, "concurrency"),
        ("keep_failed_jobs", "30m", "keep_failed_jobs must be between 1h and 1y"),
    ],
)
def test_bad_timings_name_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from(
            {
                "state": {"url": "postgresql+psycopg://calbridge@db/calbridge"},
                "cluster": {"enabled": True, key: value},
            }
        )


def test_status_outside_cluster_mode_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[state]\nurl = "sqlite:///{tmp_path / "s.sqlite3"}"\n')
    config.chmod(0o600)
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "cluster", "status", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 3
    assert "cluster mode is off in this config" in done.stderr
