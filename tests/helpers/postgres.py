"""A real PostgreSQL for the tests: Debian's server binaries, one cluster per test process.

PostgreSQL refuses to run as root, so when the tests run as root (CI, the dev machines) the
cluster runs as the ``postgres`` system user (``runuser``) in a scratch directory it owns, as
TESTING.md describes. The server listens on 127.0.0.1 only, on a free port, with its socket in
that directory; trust authentication for the role ``calbridge`` (the tests' only role).
Durability is switched off (fsync, synchronous_commit): a test cluster never survives a crash.

Each test gets its own database (:meth:`Cluster.fresh_database`, a ``CREATE DATABASE`` from the
template: ~10 ms), dropped afterwards, so tests on one cluster never see each other's rows.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.helpers.servers import free_port

ROLE = "calbridge"
SERVER_USER = "postgres"  # the system user the server runs as when the tests run as root


def bindir() -> Path:
    """Where initdb/pg_ctl live: ``$CALBRIDGE_PG_BINDIR``, else the newest Debian version."""
    configured = os.environ.get("CALBRIDGE_PG_BINDIR")
    if configured:
        return Path(configured)
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError(
        "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/pg_ctl): "
        "run scripts/system-deps.sh (Debian package postgresql) or set CALBRIDGE_PG_BINDIR"
    )


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(
        _as_server_user(cmd), capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr or done.stdout}")


@dataclass
class Cluster:
    """A running PostgreSQL cluster; ``url(db)`` is a SQLAlchemy URL for one of its databases."""

    port: int
    directory: Path
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    options: str = ""  # the server's command-line options (pg_ctl -o), kept for a restart

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def start(self) -> None:
        """Start the server (pg_ctl start, waiting until it accepts connections)."""
        try:
            _run(
                [
                    str(bindir() / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    self.options,
                    "start",
                ],
                "pg_ctl start",
            )
        except RuntimeError as exc:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            _stop(self, bindir() / "pg_ctl")
            raise RuntimeError(f"{exc}\n{log}") from None

    def stop(self) -> None:
        """Stop the server as a restart does (fast: clients are disconnected)."""
        _stop(self, bindir() / "pg_ctl")

    def restart(self, down: float = 0.0) -> None:
        """Stop the server, leave it down ``down`` seconds, start it again on the same port:
        every client connection is cut."""
        self.stop()
        time.sleep(down)
        self.start()

    @property
    def pid(self) -> int | None:
        """The postmaster's PID (its backends are its children), while it runs."""
        return _postmaster_pid(self.data)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{ROLE}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """The same database as a libpq connection string (for psycopg directly)."""
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]  # test-made SQL, names we chose

    def fresh_database(self) -> str:
        """A new empty database; returns its name (``url(name)`` connects to it)."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY')
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending any connection a test left open to it."""
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh database's URL for the ``with`` block, dropped afterwards."""
        name = self.fresh_database()
        try:
            yield self.url(name)
        finally:
            self.drop_database(name)


def _postmaster_pid(data: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((data / "postmaster.pid").read_text().splitlines()[0])
    return None


def _stop(cluster: Cluster, pg_ctl: Path) -> None:
    pid = _postmaster_pid(cluster.data)
    try:
        _run([str(pg_ctl), "-D", str(cluster.data), "-m", "fast", "-w", "-t", "20", "stop"], "stop")
    except (RuntimeError, subprocess.TimeoutExpired):
        if pid is not None:  # pg_ctl could not stop it: end the postmaster by its PID
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@contextmanager
def cluster() -> Iterator[Cluster]:
    """Start a private PostgreSQL cluster on 127.0.0.1 and stop it (by pg_ctl, else its PID)
    when the block ends, however it ends; its directory is removed."""
    bin_ = bindir()
    # Not under pytest's tmp_path: that is 0700 root, and the server user must reach its files.
    directory = Path(tempfile.mkdtemp(prefix="calbridge-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(directory, user=SERVER_USER)
        directory.chmod(0o700)
        running = Cluster(free_port(), directory)
        _run(
            [
                str(bin_ / "initdb"),
                "-D",
                str(running.data),
                "-U",
                ROLE,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )
        running.options = " ".join(
            [
                f"-k {directory}",
                f"-p {running.port}",
                "-c listen_addresses=127.0.0.1",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        running.start()
        try:
            yield running
        finally:
            _stop(running, bin_ / "pg_ctl")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def stored_text(url: str) -> bytes:
    """Every row of every table of the database at ``url`` (a SQLAlchemy URL), in PostgreSQL's
    text form: what a dump of the database would hold, to look for secrets in clear."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    chunks: list[bytes] = []
    with psycopg.connect(dsn) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'"
            )
        ]
        for table in tables:
            query = f"SELECT t::text FROM {table} t"
            chunks += [str(row[0]).encode() for row in conn.execute(query)]  # type: ignore[arg-type]
    return b"\n".join(chunks)


def password_role(cluster: Cluster, database: str, role: str, password: str) -> None:
    """Make ``role`` (owner of ``database``) log in over TCP only with ``password`` (SCRAM):
    the rest of the cluster keeps trust authentication."""
    hba = cluster.data / "pg_hba.conf"
    line = f"host all {role} 127.0.0.1/32 scram-sha-256\n"
    if line not in hba.read_text():
        hba.write_text(line + hba.read_text())  # first match wins: before the trust lines
    cluster.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
    cluster.execute(f'ALTER DATABASE "{database}" OWNER TO "{role}"')
    cluster.execute("SELECT pg_reload_conf()")
