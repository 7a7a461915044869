"""The Dockerfile's entrypoint as a plain process: its ENV, USER, WORKDIR, ENTRYPOINT + CMD and
HEALTHCHECK (on the admin listener, with and without a bearer token), with the mounts the README
describes (config, secrets, state volume). The image
itself is built only where a container engine answers (none does on the development machines:
the docker client is there without a daemon, and no registry serves the base image)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import free_port, radicale
from tests.helpers.service import PATH, REPO, ServiceTree, service_tree
from tests.helpers.sim import Sim

DOCKERFILE = REPO / "Dockerfile"


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instruction, _, args = (pending + line).strip().partition(" ")
        out.append((instruction.upper(), args.strip()))
        pending = ""
    return out


def _one(instruction: str) -> str:
    (value,) = [args for name, args in dockerfile() if name == instruction]
    return value


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name, args in dockerfile():
        if name == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(args))  # type: ignore[misc]
    return env


def _healthcheck(tree: ServiceTree, uid: int, env: dict[str, str]) -> int:
    """The HEALTHCHECK's exit code (0: healthy), run as the image's user."""
    args = _one("HEALTHCHECK")
    command = json.loads(args.split(" CMD ", 1)[1])
    out = subprocess.run(
        [*_as(uid), *command],
        env=env,
        cwd=tree.path("/var/lib/calbridge"),
        capture_output=True,
        timeout=30,
    )
    return out.returncode


def _as(uid: int) -> list[str]:
    return [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
    ]


def test_image_recipe_is_unprivileged_and_consistent() -> None:
    user = _one("USER")
    assert user.split(":")[0] not in ("root", "0") and user.split(":")[0].isdigit()
    env = image_env()
    assert env["CALBRIDGE_HTTP__LISTEN"].endswith(":" + _one("EXPOSE"))
    # /healthz and /metrics stay inside the container: loopback, another port, not exposed.
    admin_host, _, admin_port = env["CALBRIDGE_HTTP__ADMIN_LISTEN"].rpartition(":")
    assert admin_host == "127.0.0.1" and admin_port not in _one("EXPOSE").split()
    assert admin_port != env["CALBRIDGE_HTTP__LISTEN"].rpartition(":")[2]
    assert json.loads(_one("VOLUME")) == [env["STATE_DIRECTORY"]] == [_one("WORKDIR")]
    assert "--interval=" in _one("HEALTHCHECK") and "/healthz" in _one("HEALTHCHECK")
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to the image's user needs root")
def test_entrypoint_runs_as_the_image_user_with_its_mounts(live_sim: Sim, tmp_path: Path) -> None:
    uid = int(_one("USER").split(":")[0])
    port = free_port()
    with radicale(tmp_path / "radicale") as dav, service_tree() as tree:
        secrets = {"alice": live_sim.tokens["alice"], "alice-dav": dav.password}
        config = tree.install_example(live_sim.url, port, dav.url, secrets)  # mounted read-only
        env = {"PATH": f"{REPO / '.venv' / 'bin'}:{PATH}", "HOME": "/"}
        for key, value in image_env().items():
            env[key] = str(tree.path(value)) if value.startswith("/") else value
        env["CALBRIDGE_HTTP__LISTEN"] = f"127.0.0.1:{port}"  # docker run -e …, loopback here
        # The container's own loopback is the host's here: a free port instead of 8766.
        assert env["CALBRIDGE_HTTP__ADMIN_LISTEN"].startswith("127.0.0.1:")
        env["CALBRIDGE_HTTP__ADMIN_LISTEN"] = f"127.0.0.1:{tree.admin_port}"
        admin = tree.admin_url
        state = Path(env["STATE_DIRECTORY"])  # the volume, as the image made it
        state.mkdir(parents=True)
        os.chown(state, uid, uid)
        state.chmod(0o700)
        secret_dir = Path(env["CREDENTIALS_DIRECTORY"])  # -v …/secrets:/run/secrets:ro
        secret_dir.mkdir(parents=True)
        admin_token = "t" * 32  # -e CALBRIDGE_HTTP__ADMIN_TOKEN_FILE=/run/secrets/admin-token
        for name, value in (secrets | {"admin-token": admin_token}).items():
            (secret_dir / name).write_text(value)
            os.chown(secret_dir / name, uid, uid)
            (secret_dir / name).chmod(0o400)
        command = [*json.loads(_one("ENTRYPOINT")), *json.loads(_one("CMD"))]
        command = [str(tree.path(a)) if a.startswith("/etc/") else a for a in command]
        assert command[-1] == str(config)
        env["CALBRIDGE_HTTP__ADMIN_TOKEN_FILE"] = str(secret_dir / "admin-token")
        assert _healthcheck(tree, uid, env) != 0  # nothing listens yet
        proc = subprocess.Popen(
            [*_as(uid), *command],
            env=env,
            cwd=state,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60  # the HEALTHCHECK's start period
            while _healthcheck(tree, uid, env) != 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()  # communicate() would wait for a daemon that keeps running
                    raise AssertionError(f"never healthy: {proc.communicate()[1][-3000:]}")
                time.sleep(0.3)
            feeds = subprocess.run(
                [*_as(uid), "calbridge", "feeds", "-c", str(config), "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert feeds.returncode == 0, feeds.stderr
            url = json.loads(feeds.stdout)[0]["https"]
            path = url.removeprefix("https://calendar.example.edu")
            feed = httpx.get(f"http://127.0.0.1:{port}{path}")
            assert feed.status_code == 200 and b"BEGIN:VCALENDAR" in feed.content
            # The health check read the admin listener, with the token; the feed port has no
            # /healthz, and without the token the admin listener refuses (so does the check).
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 404
            assert httpx.get(f"{admin}/healthz").status_code == 401
            bearer = {"authorization": f"Bearer {admin_token}"}
            health = httpx.get(f"{admin}/healthz", headers=bearer).json()
            assert health["status"] == "ok", health  # the first cycle synced feed and calendar
            without_token = {
                k: v for k, v in env.items() if k != "CALBRIDGE_HTTP__ADMIN_TOKEN_FILE"
            }
            assert _healthcheck(tree, uid, without_token) != 0
            proc.terminate()  # docker stop
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            _, stderr = proc.communicate()
        assert _healthcheck(tree, uid, env) != 0
        assert (state / "state.sqlite3").stat().st_uid == uid
        assert live_sim.tokens["alice"] not in stderr and admin_token not in stderr


def _engine() -> str | None:
    """A container engine that can build here (a client with a daemon or a working podman)."""
    for tool in ("docker", "podman"):
        path = shutil.which(tool)
        if path and subprocess.run([path, "info"], capture_output=True, timeout=30).returncode == 0:
            return path
    return None


ENGINE = _engine()


@pytest.mark.skipif(ENGINE is None, reason="no container engine answers here (docker info fails)")
def test_image_builds_and_its_entrypoint_answers() -> None:
    assert ENGINE is not None
    tag = "calbridge-test:ci"
    build = subprocess.run(
        [ENGINE, "build", "-t", tag, str(REPO)], capture_output=True, text=True, timeout=1800
    )
    assert build.returncode == 0, build.stderr[-3000:]
    try:
        (info,) = json.loads(
            subprocess.run(
                [ENGINE, "image", "inspect", tag], capture_output=True, text=True, check=True
            ).stdout
        )
        assert info["Config"]["User"] == _one("USER") and info["Config"]["Healthcheck"]["Test"]
        version = subprocess.run(
            [ENGINE, "run", "--rm", tag, "--help"], capture_output=True, text=True, timeout=120
        )
        assert version.returncode == 0 and "calbridge" in version.stdout
    finally:
        subprocess.run([ENGINE, "rmi", "-f", tag], capture_output=True, timeout=120)
