"""``calbridge db upgrade`` and ``db current``, on SQLite and PostgreSQL; replicas that upgrade
one PostgreSQL at the same moment take turns (an advisory lock): all succeed, the schema is
created once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from bridge.state.inspect import inspect_state
from tests.helpers.cli import calbridge, clean_env
from tests.helpers.postgres import Cluster, password_role

HEAD = inspect_state("sqlite://").expected


def config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "config.toml"
    (tmp_path / "token").write_text("x" * 20)
    path.write_text(f"""
[state]
url = "{url}"
[[accounts]]
id = "alice"
canvas_url = "https://canvas.example.edu"
token_file = "{tmp_path / "token"}"
[[feeds]]
id = "alice"
account = "alice"
""")
    return path


def versions(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as con:
            return list(con.execute(text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def test_upgrade_then_current(tmp_path: Path, state_url: str) -> None:
    cfg = config(tmp_path, state_url)
    before = calbridge("db", "current", "-c", str(cfg))
    assert before.returncode == 0, before.stderr
    assert f"schema (none), newest {HEAD}" in before.stdout
    first = calbridge("db", "upgrade", "-c", str(cfg))
    assert first.returncode == 0, first.stderr
    assert f"upgraded from schema (empty) to {HEAD}" in first.stdout
    again = calbridge("db", "upgrade", "-c", str(cfg), "--json")
    assert json.loads(again.stdout) | {"where": ""} == {"where": "", "before": HEAD, "after": HEAD}
    now = calbridge("db", "current", "-c", str(cfg), "--json")
    report = json.loads(now.stdout)
    assert (report["status"], report["revision"], report["ok"]) == ("current", HEAD, True)
    assert versions(state_url) == [HEAD]


def test_replicas_upgrading_an_empty_postgresql_at_once_all_succeed(
    tmp_path: Path, pg_url: str
) -> None:
    cfg = config(tmp_path, pg_url)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bridge", "db", "upgrade", "-c", str(cfg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    said = sorted("upgraded" in out for out, _ in outs)
    assert said == [False, False, False, True], outs  # one did the work, the others found it done
    assert versions(pg_url) == [HEAD]


def test_a_password_in_the_url_is_never_shown(tmp_path: Path, pg_url: str) -> None:
    secret = "Zx9-not-for-logs-5521"
    url = pg_url.replace("calbridge@", f"calbridge:{secret}@")  # trust auth ignores it
    cfg = config(tmp_path, url)
    for args in (["db", "upgrade"], ["db", "current"]):
        out = calbridge(*args, "-c", str(cfg))
        assert secret not in out.stdout + out.stderr
        assert "calbridge:***@" in out.stdout, out.stdout + out.stderr
    broken = config(tmp_path, f"postgresql+psycopg://calbridge:{secret}@127.0.0.1:1/x")
    out = calbridge("db", "upgrade", "-c", str(broken))
    assert out.returncode == 3 and "state.url: cannot open the state database" in out.stderr
    assert secret not in out.stdout + out.stderr
    malformed = config(tmp_path, f"postgresql+psycopg://calbridge:{secret}@127.0.0.1:port/x")
    for args in (["db", "upgrade"], ["db", "current"]):
        out = calbridge(*args, "-c", str(malformed))
        assert out.returncode == 3, out.stdout + out.stderr
        assert "not a database URL" in out.stdout + out.stderr
        assert secret not in out.stdout + out.stderr


def test_the_password_comes_from_pgpassfile_and_never_shows(
    tmp_path: Path, pg_cluster: Cluster
) -> None:
    secret = f"pw-{os.getpid()}-Qm3v8Lr2"
    role = f"pw_{os.getpid()}"
    with pg_cluster.database() as url:
        database = url.rsplit("/", 1)[1]
        password_role(pg_cluster, database, role, secret)
        cfg = config(tmp_path, url.replace("calbridge@", f"{role}@"))
        refused = calbridge("db", "upgrade", "-c", str(cfg))
        assert refused.returncode == 3, refused.stderr
        assert "state.url: cannot open the state database" in refused.stderr
        assert "password" in refused.stderr  # libpq: no password supplied / auth failed
        passfile = tmp_path / "pgpass"
        passfile.write_text(f"127.0.0.1:{pg_cluster.port}:{database}:{role}:{secret}\n")
        passfile.chmod(0o600)
        upgraded = calbridge(
            "db", "upgrade", "-c", str(cfg), env=clean_env(PGPASSFILE=str(passfile))
        )
        assert upgraded.returncode == 0, upgraded.stderr
        for out in (refused, upgraded):
            assert secret not in out.stdout + out.stderr
        pg_cluster.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        )
