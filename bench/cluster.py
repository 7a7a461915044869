"""Cluster mode's throughput: accounts synced per second with 1, 2 and 3 replicas, and what one
account's sync costs the replicas, the database and the simulator.

``python bench/cluster.py [ACCOUNTS] [REPLICAS ...]`` (default 300 accounts; 1 2 3 replicas;
``BENCH_PASSES`` timed passes per replica count, default 4).
Per replica count: a fresh database on a private PostgreSQL (tests/helpers/postgres.py), the
simulator in its own process (bench/canvas_sim.py: one conference and one appointment group
per user, a feed per account), the replicas started together. A warm-up pass syncs every
account once (first cycles, not timed); then every account is made due at once, pass after
pass, and each pass is timed from the moment they are due to the moment the last one is
recorded, with the replicas running flat out (the queue is never empty until the end); it
is also given from the dispatcher's first claim of the pass ("from the dispatch": without
the wait for the next dispatch tick, up to ``dispatch_every``, the same for any number of
replicas).

Printed per pass: wall seconds, accounts per second, CPU milliseconds per account of the
replicas together, of PostgreSQL (the postmaster and its backends, from /proc) and of the
simulator, and the database's cost per account: transactions committed and rows written
(pg_stat_database). Per replica count: the median rate and its range over the passes, and
the ratio of medians to one replica (measured in the same run). Before dividing it checks
that each pass did the same work: every account synced once (``cluster_schedule``), with
exactly two list requests per account at the simulator (``/users/self`` is counted apart:
asked only for a profile no process has stored, see ``account_profiles``). It exits 1 if a
check fails.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import postgres  # noqa: E402
from tests.helpers.replicas import Replica, SimWorld, cluster_config, replicas, sim_world  # noqa: E402

PASSES = int(os.environ.get("BENCH_PASSES", "4"))


class CheckFailed(Exception):
    pass


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [0] is the state, [1] the parent PID."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int | None) -> float:
    """CPU of a process, its ended children (reaped: counted in its own stat) and its live
    children: PostgreSQL's postmaster and its backends."""
    if pid is None:
        return 0.0
    fields = _stat(pid)
    ticks = sum(int(f) for f in fields[11:15])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                child = _stat(int(entry.name))
            except OSError:  # ended meanwhile
                continue
            if int(child[1]) == pid:
                ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_now(running: list[Replica], sim: SimWorld, pg: postgres.Cluster) -> dict[str, float]:
    return {
        "replicas": sum(cpu_seconds(r.proc.pid) for r in running),
        "pg": tree_cpu_seconds(pg.pid),
        "sim": cpu_seconds(sim.proc.pid),
    }


def db_counters(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted "
            "FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return {"xacts": int(row[0]), "rows": int(row[1])}


def synced(dsn: str, since: float) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM cluster_schedule WHERE last_outcome = 'ok' "
            "AND last_sync_at > to_timestamp(%s) AT TIME ZONE 'UTC'",
            (since,),
        ).fetchone()
    return int(row[0]) if row else 0


def wait_synced(dsn: str, since: float, count: int, timeout: float) -> float:
    """Until ``count`` accounts synced after ``since``; when the last one was recorded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if synced(dsn, since) >= count:
            with psycopg.connect(dsn) as conn:
                row = conn.execute(
                    "SELECT extract(epoch FROM max(last_sync_at) AT TIME ZONE 'UTC') "
                    "FROM cluster_schedule"
                ).fetchone()
            assert row is not None
            return float(row[0])
        time.sleep(0.2)
    raise CheckFailed(f"only {synced(dsn, since)} of {count} accounts synced in {timeout}s")


def sim_counts(sim: SimWorld, reset: bool) -> Counter[str]:
    stats = httpx.get(f"{sim.url}/_sim/stats", timeout=60).json()
    if reset:
        httpx.delete(f"{sim.url}/_sim/stats", timeout=60)
    if set(stats["by_status"]) - {"200"}:
        raise CheckFailed(f"the simulator answered {stats['by_status']}")
    return Counter(stats["by_route"])


def one_pass(
    dsn: str, sim: SimWorld, pg: postgres.Cluster, running: list[Replica], accounts: int
) -> dict[str, Any]:
    sim_counts(sim, reset=True)
    cpu = cpu_now(running, sim, pg)
    db = db_counters(dsn)
    start = time.time()
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE cluster_schedule SET due_at = now() AT TIME ZONE 'UTC'")
    last = wait_synced(dsn, start, accounts, timeout=600)
    time.sleep(0.5)
    routes = sim_counts(sim, reset=False)
    used = {k: v - cpu[k] for k, v in cpu_now(running, sim, pg).items()}
    after = db_counters(dsn)
    lists = routes["GET /api/v1/conferences"] + routes["GET /api/v1/appointment_groups"]
    if lists != 2 * accounts or routes["GET /api/v1/conferences"] != accounts:
        raise CheckFailed(f"{lists} list requests for {accounts} accounts: {dict(routes)}")
    if sum(routes.values()) - lists - routes["GET /api/v1/users/self"]:
        raise CheckFailed(f"unexpected requests: {dict(routes)}")
    wall = last - start
    with psycopg.connect(dsn) as conn:  # the first claim of this pass: the dispatcher's tick
        row = conn.execute(
            "SELECT extract(epoch FROM min(dispatched_at) AT TIME ZONE 'UTC') "
            "FROM cluster_schedule WHERE dispatched_at >= to_timestamp(%s) AT TIME ZONE 'UTC'",
            (start,),
        ).fetchone()
    assert row is not None and row[0] is not None
    busy = last - float(row[0])
    return {
        "wall": wall,
        "rate": accounts / wall,
        "busy_rate": accounts / busy,
        "cpu_ms": used["replicas"] * 1000 / accounts,
        "pg_ms": used["pg"] * 1000 / accounts,
        "sim_ms": used["sim"] * 1000 / accounts,
        "xacts": (after["xacts"] - db["xacts"]) / accounts,
        "rows": (after["rows"] - db["rows"]) / accounts,
        "users_self": routes["GET /api/v1/users/self"],
    }


def run(count: int, accounts: int, sim: SimWorld, pg: postgres.Cluster) -> list[dict[str, Any]]:
    with pg.database() as url, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        dsn = pg.dsn(url.rsplit("/", 1)[1])
        config = cluster_config(
            tmp,
            url,
            sim,
            interval="1h",
            feeds=set(range(accounts)),
            caldav={},
            cluster='dispatch_every = "1s"\nconcurrency = 8\n',
        )
        with replicas(config, tmp, count) as running:
            wait_synced(dsn, 0.0, accounts, timeout=600)  # warm-up: every first cycle
            results = [one_pass(dsn, sim, pg, running, accounts) for _ in range(PASSES)]
            for replica in running:
                if replica.proc.poll() is not None:
                    raise CheckFailed(
                        f"replica {replica.name} died: {replica.log.read_text()[-2000:]}"
                    )
    return results


def load() -> str:
    return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    args = [int(a) for a in sys.argv[1:]]
    accounts = args[0] if args else 300
    counts = args[1:] or [1, 2, 3]
    print(
        f"{accounts} accounts, {os.cpu_count()} cores, {PASSES} passes of every account at "
        f"once per replica count; {load()}"
    )
    base: float | None = None
    busy_base = 1.0
    try:
        with sim_world(accounts, 1, 1) as sim, postgres.cluster() as pg:
            for count in counts:
                results = run(count, accounts, sim, pg)
                rates = [r["rate"] for r in results]
                median = statistics.median(rates)
                busy = statistics.median(r["busy_rate"] for r in results)
                if base is None and count == 1:
                    base, busy_base = median, busy
                ratio = f"{median / base:.2f}x one replica (medians)" if base else "-"
                busy_ratio = f"{busy / busy_base:.2f}x" if base else "-"
                for n, r in enumerate(results, 1):
                    print(
                        f"{count} replica(s) pass {n}: {r['wall']:.1f}s, {r['rate']:.1f} accounts/s "
                        f"({r['busy_rate']:.1f} from the dispatch), "
                        f"CPU ms/account: replicas {r['cpu_ms']:.1f}, PostgreSQL {r['pg_ms']:.1f}, "
                        f"simulator {r['sim_ms']:.1f}; {r['xacts']:.1f} transactions and "
                        f"{r['rows']:.1f} rows written per account; /users/self asked "
                        f"{r['users_self']} times"
                    )

                def mid(key: str, rs: list[dict[str, Any]] = results) -> float:
                    return float(statistics.median(r[key] for r in rs))

                print(
                    f"{count} replica(s): median {median:.1f} accounts/s (range "
                    f"{min(rates):.1f}-{max(rates):.1f}) = {ratio}; from the dispatch "
                    f"{busy:.1f} accounts/s = {busy_ratio}; median CPU ms/account: "
                    f"replicas {mid('cpu_ms'):.1f}, PostgreSQL {mid('pg_ms'):.1f}, simulator "
                    f"{mid('sim_ms'):.1f}; {mid('xacts'):.1f} transactions/account; {load()}"
                )
    except CheckFailed as exc:
        print(f"CHECK FAILED: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
