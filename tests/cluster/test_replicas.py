"""Cluster mode end to end, all real processes: PostgreSQL, the Canvas simulator, Radicale and
three ``calbridge run`` replicas sharing 300 accounts. One replica is killed with ``kill -9``
while it syncs; then:

* every account was polled again within its interval (+ jitter + the stated bound for the
  accounts the dead replica held) and never twice in one interval: per token, the simulator's
  request log shows one complete poll (the same requests) per interval;
* no write-back was made twice (the simulator's log of DELETEs, the journal);
* no event is duplicated in Radicale;
* every feed is served identically (body and ETag) by each surviving replica;
* ``calbridge cluster status`` shows the two live replicas and no overdue account.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import icalendar
import psycopg
import pytest

from tests.helpers.postgres import Cluster
from tests.helpers.replicas import REPO, Replica, SimWorld, cluster_config, replicas, sim_world
from tests.helpers.servers import Server, radicale

USERS = 300
INTERVAL = 30.0  # seconds (poll_interval); the jitter adds up to 10% of it
WINDOW = 2  # intervals watched after the first sync of every account (the first interval)
JITTER = INTERVAL * 0.1
HEARTBEAT, STALLED_AFTER, DISPATCH = 1.0, 3.0, 1.0
# How late the accounts of a dead replica may be synced again, beyond interval + jitter: its
# heartbeat must go stale, the next dispatch queue its jobs again, and the job wait its turn.
RECOVERY = STALLED_AFTER + DISPATCH + 2 * HEARTBEAT + 6.0
LAG = 10.0  # beyond interval + jitter, for everyone: dispatch tick, queue, a busy 2-core machine
CALDAV = {n for n in range(USERS) if n % 20 == 0}  # each course's first student: a reservation
FEEDS = {n for n in range(USERS) if n % 10 == 0}
CANCELLED = sorted(CALDAV)[:5]  # these delete their booking in their calendar
POLL = ("GET", "/api/v1/conferences")


def _propfind(url: str) -> list[str]:
    answer = httpx.request(
        "PROPFIND",
        url,
        headers={"Depth": "1", "Content-Type": "application/xml"},
        content='<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/>'
        "</d:prop></d:propfind>",
    )
    assert answer.status_code == 207, answer.text
    return [node.text or "" for node in ET.fromstring(answer.content).iter("{DAV:}href")]


def calendar_uids(server: Server, user: str) -> dict[str, list[str]]:
    """uid -> the hrefs holding it, over every calendar of ``user`` in Radicale."""
    base = httpx.URL(server.url)
    found: dict[str, list[str]] = defaultdict(list)
    for collection in _propfind(str(base.join(f"/{user}/"))):
        if collection.rstrip("/") == f"/{user}":
            continue
        for href in _propfind(str(base.join(collection))):
            if href.endswith(".ics"):
                ics = httpx.get(base.join(href)).text
                for event in icalendar.Calendar.from_ical(ics).walk("VEVENT"):
                    found[str(event["UID"])].append(href)
    return found


def wait_all_synced(dsn: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM cluster_schedule WHERE last_outcome = 'ok'"
            ).fetchone()
        done = row[0] if row else 0
        if done == USERS:
            return
        time.sleep(0.5)
    raise AssertionError(f"only {done} of {USERS} accounts synced within {timeout}s")


def kill_one_mid_cycle(dsn: str, running: list[Replica]) -> tuple[Replica, set[str]]:
    """kill -9 a replica while it runs account jobs; it and the accounts it held."""
    by_pid = {r.proc.pid: r for r in running}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(
                "SELECT r.name, j.args->>'account_id' FROM procrastinate_jobs j "
                "JOIN cluster_replicas r ON r.worker_id = j.worker_id "
                "WHERE j.status = 'doing' AND j.task_name = 'calbridge.sync_account'"
            ).fetchall()
        held: dict[int, set[str]] = defaultdict(set)
        for name, account in rows:
            pid = int(str(name).rsplit(":", 1)[1])
            if pid in by_pid:
                held[pid].add(str(account))
        if held:
            pid = max(held, key=lambda p: len(held[p]))
            victim = by_pid[pid]
            victim.kill9()
            return victim, held[pid]
        time.sleep(0.05)
    raise AssertionError("no replica was running a job for 20 s")


@pytest.fixture
def setup(pg_cluster: Cluster, tmp_path: Path) -> Iterator[tuple[SimWorld, Server, str, Path]]:
    with (
        pg_cluster.database() as url,
        sim_world(USERS, 1, 1) as sim,
        radicale(tmp_path / "dav") as server,
    ):
        config = cluster_config(
            tmp_path,
            url,
            sim,
            interval=f"{INTERVAL:g}s",
            feeds=FEEDS,
            caldav={n: (server.url, f"u{n}") for n in CALDAV},
            cluster=f'dispatch_every = "{DISPATCH:g}s"\nheartbeat = "{HEARTBEAT:g}s"\n'
            f'stalled_after = "{STALLED_AFTER:g}s"\nconcurrency = 8\n',
        )
        yield sim, server, pg_cluster.dsn(url.rsplit("/", 1)[1]), config


def test_three_replicas_share_300_accounts_and_survive_kill_9(
    setup: tuple[SimWorld, Server, str, Path], tmp_path: Path
) -> None:
    sim, server, dsn, config = setup
    ids = {f"a{n}": user for n, user in enumerate(sim.ids)}
    began = time.time()
    with replicas(config, tmp_path, 3) as running:
        started = time.time()
        wait_all_synced(dsn, timeout=120)
        t0 = time.time()
        # Five people delete their booking in their calendar: one cancel each, never two.
        bookings: dict[int, str] = {}
        for n in CANCELLED:
            uids = calendar_uids(server, f"u{n}")
            (uid,) = [u for u in uids if u.startswith("canvas-reservation-")]
            (href,) = uids[uid]
            assert httpx.delete(httpx.URL(server.url).join(href)).status_code == 200
            bookings[n] = uid
        time.sleep(max(0.0, t0 + INTERVAL * 0.6 - time.time()))
        victim, held = kill_one_mid_cycle(dsn, running)
        killed_at = time.time()
        survivors = [r for r in running if r is not victim]
        time.sleep(max(0.0, t0 + WINDOW * INTERVAL + JITTER + LAG - time.time()))
        t_end = time.time()

        status = subprocess.Popen(
            [sys.executable, "-m", "bridge", "cluster", "status", "-c", str(config), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        with psycopg.connect(dsn) as conn:
            secrets = conn.execute("SELECT feed_id, secret FROM feed_secrets").fetchall()

        def fetch(feed: tuple[str, str]) -> list[tuple[int, str | None, bytes]]:
            answers = [httpx.get(f"{r.url}/feeds/{feed[0]}/{feed[1]}.ics") for r in survivors]
            return [(a.status_code, a.headers.get("etag"), a.content) for a in answers]

        with ThreadPoolExecutor(8) as pool:
            served = dict(zip([f for f, _ in secrets], pool.map(fetch, secrets), strict=True))
        fed = time.time()
        log = sim.requests()
        logged = time.time()
        status_out, status_err = status.communicate(timeout=120)
        gathered = time.time()
        for replica in survivors:
            assert replica.proc.poll() is None, replica.log.read_text()[-2000:]

    print(
        f"replicas up in {started - began:.1f}s, first sync of all in {t0 - started:.1f}s; "
        f"killed {victim.name} {killed_at - t0:.1f}s into the window holding {len(held)} "
        f"accounts; window {t_end - t0:.0f}s, feeds read in {fed - t_end:.1f}s, request log in "
        f"{logged - fed:.1f}s, status in {gathered - t_end:.1f}s, "
        f"replicas stopped in {time.time() - gathered:.1f}s"
    )

    # --- every account polled once per interval, by one replica, completely ------------------
    by_user: dict[int, list[dict[str, object]]] = defaultdict(list)
    for entry in log:
        if entry["user"] is not None:
            by_user[int(entry["user"])].append(entry)  # type: ignore[call-overload]
    recovered = [
        min(float(e["at"]) for e in by_user[ids[a]] if float(e["at"]) > killed_at) - killed_at  # type: ignore[arg-type]
        for a in held
        if any(float(e["at"]) > killed_at for e in by_user[ids[a]])  # type: ignore[arg-type]
    ]
    print(f"the killed replica's accounts polled again {max(recovered, default=0):.1f}s after")
    problems = []
    for account, user in ids.items():
        entries = by_user[user]
        polls = [float(e["at"]) for e in entries if (e["method"], e["path"]) == POLL]  # type: ignore[arg-type]
        before = [t for t in polls if t < t0]
        window = [t for t in polls if t0 <= t < t_end]
        assert before, f"{account}: never polled before the window"
        times = [before[-1], *window, t_end]
        bound = INTERVAL + JITTER + LAG + (RECOVERY if account in held else 0.0)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        if max(gaps) > bound:
            problems.append(f"{account}: {max(gaps):.1f}s without a poll (bound {bound:.1f}s)")
        inner = [b - a for a, b in itertools.pairwise(times[:-1])]
        if account not in held and inner and min(inner) < INTERVAL * 0.5:
            problems.append(f"{account}: polled twice within {min(inner):.1f}s")
        # one complete poll per interval: the GETs of one poll come together (the next poll
        # is an interval later), and each poll asks the two lists once (/users/self aside:
        # asked the first time a replica syncs the account)
        gets = sorted(
            (float(e["at"]), str(e["path"]))  # type: ignore[arg-type]
            for e in entries
            if e["method"] == "GET" and e["path"] != "/api/v1/users/self"
        )
        groups: list[list[tuple[float, str]]] = []
        for at, path in gets:
            if groups and at - groups[-1][-1][0] < INTERVAL / 3:
                groups[-1].append((at, path))
            else:
                groups.append([(at, path)])
        wrote_back = account in {f"a{n}" for n in CANCELLED}  # a cancel reads its booking
        for group in groups:
            if t0 <= group[0][0] < t_end and account not in held and not wrote_back:
                paths = sorted(p for _, p in group)
                if paths != ["/api/v1/appointment_groups", "/api/v1/conferences"]:
                    problems.append(f"{account}: a poll asked {paths}")
        if account not in held and not WINDOW - 1 <= len(window) <= WINDOW + 1:
            problems.append(f"{account}: {len(window)} polls in {t_end - t0:.0f}s")
    assert not problems, "\n".join(problems[:30])
    assert held, "the killed replica held no job"

    # --- write-back: each deleted booking cancelled once, nothing else written ---------------
    writes = [e for e in log if e["method"] in ("POST", "PUT", "DELETE")]
    reservation_ids = {int(uid.split("-")[2].split("@")[0]) for uid in bookings.values()}
    cancels = sorted(int(str(e["path"]).rsplit("/", 1)[1]) for e in writes)
    assert cancels == sorted(reservation_ids), writes
    with psycopg.connect(dsn) as conn:
        journal = conn.execute(
            "SELECT uid, state, count(*) FROM writeback_journal GROUP BY uid, state"
        ).fetchall()
    assert sorted(journal) == sorted((uid, "applied", 1) for uid in bookings.values())

    # --- Radicale: no event twice, the cancelled bookings gone ---------------------------------
    for n in sorted(CALDAV):
        uids = calendar_uids(server, f"u{n}")
        doubled = {u: hrefs for u, hrefs in uids.items() if len(hrefs) > 1}
        assert not doubled, f"u{n}: {doubled}"
        if n in bookings:
            assert bookings[n] not in uids
        assert len(uids) == sim.expected[n] - (1 if n in bookings else 0), (n, sorted(uids))

    # --- feeds: the same bytes and ETag from each surviving replica ---------------------------
    assert len(served) == len(FEEDS)
    for feed_id, answers in served.items():
        assert {a[0] for a in answers} == {200}, (feed_id, [a[0] for a in answers])
        assert len({(a[1], a[2]) for a in answers}) == 1, feed_id

    # --- cluster status: two replicas alive, the dead one silent, none overdue ----------------
    report = json.loads(status_out)
    assert status.returncode in (0, 1), status_err  # 1: an account overdue (checked below)
    alive = {r["name"] for r in report["replicas"] if r["alive"]}
    assert {int(n.rsplit(":", 1)[1]) for n in alive} == {r.proc.pid for r in survivors}
    assert report["accounts_total"] == USERS
    # the status ran on the machine this test loads (its own CLI, the feed reads): each
    # account synced within the bound the polls were held to; those the status calls overdue
    # (1.5 intervals + jitter) waited in a queue that was still being worked
    asked = datetime.fromisoformat(report["now"])
    for account in report["accounts"]:
        since = (asked - datetime.fromisoformat(account["last_sync"])).total_seconds()
        assert since <= INTERVAL + JITTER + LAG + RECOVERY, account
    assert report["queue"]["failed"] == 0
    synced_by = {a["last_sync_by"] for a in report["accounts"]}
    assert synced_by <= {r["name"] for r in report["replicas"]}
