"""deploy/compose.yaml (calbridge x3 + PostgreSQL) checked against the CLI, the image and its
config, since no container engine runs here: it parses; each calbridge service's command is
one the CLI accepts and, with the image's entrypoint, runs for real against a PostgreSQL (the
test's, standing in for the "postgres" service); the config it mounts loads with the service's
environment, names the postgres service's role and database, and every secret it needs is
mounted; the replicas differ only in the address they publish."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from bridge.config import load_config
from bridge.state.inspect import inspect_state
from tests.helpers.cli import calbridge, clean_env
from tests.helpers.service import REPO

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
REPLICAS = ("calbridge-1", "calbridge-2", "calbridge-3")
CONFIG_IN_CONTAINER = "/etc/calbridge/config.toml"
SECRETS_IN_CONTAINER = "/run/secrets"  # the image's CREDENTIALS_DIRECTORY


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def calbridge_services() -> dict[str, dict[str, Any]]:
    return {k: v for k, v in compose()["services"].items() if k != "postgres"}


def mounted_config(service: dict[str, Any]) -> Path:
    (mount,) = [v for v in service["volumes"] if v.split(":")[1] == CONFIG_IN_CONTAINER]
    source, _, mode = mount.partition(":")
    assert mode.endswith(":ro"), mount  # the config is the operator's, read-only
    return (DEPLOY / source).resolve()


def test_services_and_their_order() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "migrate", *REPLICAS}
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in REPLICAS:
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }
        assert services[name]["restart"].startswith("on-failure")
    for service in calbridge_services().values():
        assert service["build"] == ".." and (DEPLOY / ".." / "Dockerfile").exists()
        assert service["image"] == services["calbridge-1"]["image"]


def test_replicas_differ_only_in_the_address_they_publish() -> None:
    services = compose()["services"]

    def without_address(service: dict[str, Any]) -> dict[str, Any]:
        env = {k: v for k, v in service["environment"].items() if k != "CALBRIDGE_HTTP__LISTEN"}
        return {**service, "ports": None, "environment": env}

    first = without_address(services[REPLICAS[0]])
    assert all(without_address(services[name]) == first for name in REPLICAS[1:])
    published = {services[name]["ports"][0].rsplit(":", 1)[0] for name in REPLICAS}
    assert len(published) == len(REPLICAS)
    assert all(p.startswith("127.0.0.1:") for p in published)


@pytest.mark.parametrize("name", ["migrate", *REPLICAS])
def test_each_service_command_is_one_the_cli_accepts(name: str) -> None:
    service = calbridge_services()[name]
    command = service["command"]
    assert command[command.index("--config") + 1] == CONFIG_IN_CONTAINER
    options = [a for a in command if a.startswith("-")]
    verb = [a for a in command if not a.startswith("-") and a != CONFIG_IN_CONTAINER]
    out = calbridge(*verb, "--help")
    assert out.returncode == 0, out.stderr
    for option in options:
        assert option in out.stdout, (name, option)


@pytest.mark.parametrize("name", REPLICAS)
def test_mounted_config_loads_with_the_service_environment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose()["services"]
    service = services[name]
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, str(value))
    settings = load_config(mounted_config(service))
    listen_port = settings.http.listen.rsplit(":", 1)[1]
    assert settings.http.listen == service["environment"]["CALBRIDGE_HTTP__LISTEN"]
    assert service["ports"][0].rsplit(":", 1)[1] == listen_port  # publishes what it listens on
    # the image's health check asks the admin listener inside the container
    assert settings.http.admin_listen.startswith("127.0.0.1:")
    # the state is the postgres service, as its role and database
    url = make_url(settings.state.url or "")
    postgres = services["postgres"]["environment"]
    assert url.drivername == "postgresql+psycopg" and url.host == "postgres"
    assert (url.username, url.database) == (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"])
    assert url.password is None  # from PGPASSFILE, a secret
    declared = compose()["secrets"]
    mounted = set(service["secrets"])
    assert service["environment"]["PGPASSFILE"] == f"{SECRETS_IN_CONTAINER}/pgpass"
    needed = {"pgpass"}
    needed |= {a.token_credential for a in settings.accounts if a.token_credential}
    needed |= {c.password_credential for c in settings.caldav if c.password_credential}
    assert needed <= mounted <= set(declared), (needed, mounted)
    for secret in mounted:
        assert declared[secret]["file"] == f"./secrets/{secret}"


def test_the_migrate_command_runs_against_postgresql(tmp_path: Path, pg_url: str) -> None:
    """The migrate service's command, as the image runs it (ENTRYPOINT calbridge), with the
    compose config pointed at this test's PostgreSQL instead of the postgres service."""
    services = compose()["services"]
    config = tmp_path / "config.toml"
    text = mounted_config(services["migrate"]).read_text()
    config.write_text(
        text.replace("postgresql+psycopg://calbridge@postgres:5432/calbridge", pg_url)
    )
    command = [
        str(config) if a == CONFIG_IN_CONTAINER else a for a in services["migrate"]["command"]
    ]
    out = calbridge(*command, env=clean_env(**services["migrate"]["environment"]))
    assert out.returncode == 0, out.stderr
    state = inspect_state(pg_url)
    assert state.status == "current", state
    again = calbridge(*command, "--json", env=clean_env(**services["migrate"]["environment"]))
    assert json.loads(again.stdout)["before"] == state.revision
