"""``calbridge check`` only reads: a missing state database is reported, not created; an old
schema is reported, not migrated; ``--json`` gives scripts the same findings."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from bridge.state import open_state
from bridge.state.db import MIGRATIONS, make_engine, upgrade
from tests.helpers.cli import calbridge, clean_env
from tests.helpers.sim import Sim


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head() or ""


def write_config(tmp: Path, sim: Sim, db: Path) -> Path:
    (tmp / "alice.token").write_text(sim.tokens["alice"])
    path = tmp / "config.toml"
    path.write_text(f"""
[state]
url = "sqlite:///{db}"
[[accounts]]
id = "alice"
canvas_url = "{sim.url}"
token_file = "{tmp / "alice.token"}"
[[feeds]]
id = "alice"
account = "alice"
""")
    return path


def revision_of(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])
    finally:
        conn.close()


def snapshot(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def test_missing_database_is_reported_not_created(sim: Sim, tmp_path: Path) -> None:
    db = tmp_path / "var" / "lib" / "calbridge" / "state.sqlite3"
    config = write_config(tmp_path, sim, db)
    out = calbridge("check", "-c", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "account alice: ok: token of Alice Liddell" in out.stdout
    assert f"state: ok: {db} does not exist yet; `calbridge run` or `sync` creates it" in out.stdout
    assert not db.exists() and not (tmp_path / "var").exists()
    as_json = calbridge("check", "--json", env=clean_env(CALBRIDGE_CONFIG=str(config)))
    report = json.loads(as_json.stdout)
    assert report["ok"] is True and report["state"]["status"] == "missing"
    assert report["accounts"] == [
        {"id": "alice", "ok": True, "detail": report["accounts"][0]["detail"]}
    ]
    assert not (tmp_path / "var").exists()


def test_outdated_schema_is_reported_not_migrated(sim: Sim, tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite3"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine, "0001")
    engine.dispose()
    before = snapshot(tmp_path)
    config = write_config(tmp_path, sim, db)
    out = calbridge("check", "-c", str(config))
    head = head_revision()
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"has schema 0001, older than this calbridge's {head}" in out.stdout
    after = snapshot(tmp_path)
    assert {k: after[k] for k in before} == before  # the database file did not change
    assert set(after) - set(before) == {"config.toml", "alice.token"}  # no -wal, no -shm
    assert revision_of(db) == "0001"


def test_outdated_postgresql_schema_is_reported_not_migrated(
    sim: Sim, tmp_path: Path, pg_url: str
) -> None:
    engine = make_engine(pg_url)
    upgrade(engine, "0001")
    config = write_config(tmp_path, sim, tmp_path / "unused.sqlite3")
    config.write_text(
        config.read_text().replace(f"sqlite:///{tmp_path / 'unused.sqlite3'}", pg_url)
    )
    out = calbridge("check", "-c", str(config), "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (report["state"]["status"], report["state"]["revision"]) == ("outdated", "0001")
    assert report["state"]["where"] == pg_url
    with engine.connect() as con:  # read inside a transaction rolled back: still 0001
        assert con.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
    engine.dispose()


def test_current_and_newer_schemas(sim: Sim, tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite3"
    open_state(f"sqlite:///{db}").close()
    config = write_config(tmp_path, sim, db)
    out = calbridge("check", "-c", str(config), "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["state"]["status"] == "current"
    assert report["state"]["revision"] == head_revision()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    conn.close()
    out = calbridge("check", "-c", str(config))
    assert out.returncode == 1
    assert "state: FAILED:" in out.stdout and "written by a newer calbridge" in out.stdout


def test_unreadable_database_fails_the_check(sim: Sim, tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite3"
    db.write_text("this is not a database")
    config = write_config(tmp_path, sim, db)
    out = calbridge("check", "-c", str(config), "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and report["ok"] is False
    assert (
        report["state"]["status"] == "unreadable" and "not a database" in report["state"]["detail"]
    )
    assert db.read_text() == "this is not a database"


def test_database_url_password_is_never_shown(sim: Sim, tmp_path: Path) -> None:
    config = write_config(tmp_path, sim, tmp_path / "unused.sqlite3")
    text = config.read_text().replace(
        f'url = "sqlite:///{tmp_path / "unused.sqlite3"}"',
        'url = "postgresql://calbridge:db-secret-4242@127.0.0.1:1/calbridge"',
    )
    config.write_text(text)
    out = calbridge("check", "-c", str(config))
    assert out.returncode == 1
    assert (
        "state: FAILED: cannot read postgresql://calbridge:***@127.0.0.1:1/calbridge" in out.stdout
    )
    assert "db-secret-4242" not in out.stdout + out.stderr
