"""Cluster mode: replicas of ``calbridge run`` on one PostgreSQL share the accounts through a
job engine, procrastinate, instead of each process scheduling every account (APScheduler).

What each replica runs, in its own event loop beside the feed server:

* a procrastinate **worker** (``[cluster] concurrency`` jobs at once) with a heartbeat every
  ``[cluster] heartbeat``;
* the **dispatcher**, a periodic task every ``[cluster] dispatch_every``: procrastinate defers
  it once per tick however many replicas run, and its ``lock`` runs one at a time. It claims the
  due accounts in the state store (``cluster_schedule``: each one's ``due_at`` moved a poll
  interval on, with jitter, in the same transaction) and defers one ``sync_account`` job per
  account with ``lock`` and ``queueing_lock`` = the account: one job of an account runs at a
  time and at most one waits;
* **stalled jobs**: each dispatch first puts back in the queue the jobs of a replica whose
  heartbeat stopped for ``[cluster] stalled_after`` (``kill -9``, power cut), and a claimed
  account whose job is gone (not queued, not running) is claimed again as soon as it is due;
  a periodic task does the same every few seconds, in case the dead replica held the
  dispatcher's own lock;
* **cleanup**: an hourly task deletes the ended jobs of the engine's table: succeeded ones
  (normally deleted as they finish) at once, failed ones after ``[cluster] keep_failed_jobs``;
  and the stored ``/users/self`` profiles no process has refreshed for a while;
* the **job** runs the account's cycle (:mod:`bridge.daemon.cycle`) inside a PostgreSQL
  transaction-scoped advisory lock on the account (released by PostgreSQL when the replica
  dies), under the account's lease (shared with a one-off ``calbridge sync``), and with the
  write-back journal: even two jobs of one account could not write back twice. A failed sync
  is retried with exponential backoff (``[cluster] retries``), then waits for its next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import procrastinate
import psycopg
from procrastinate import exceptions as engine_errors
from procrastinate.jobs import Status
from procrastinate.worker import Worker
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy.engine import make_url

from bridge import metrics
from bridge.config import AccountConfig, ClusterConfig
from bridge.daemon.cycle import AccountResult
from bridge.errors import BridgeError, SetupError
from bridge.model.outcomes import AccountState
from bridge.state import StateStore
from bridge.state.cluster import Due, account_lock_key
from bridge.state.db import lock_key

log = logging.getLogger("bridge.daemon.cluster")

QUEUE = "calbridge"
SYNC_TASK = "calbridge.sync_account"
DISPATCH_TASK = "calbridge.dispatch"
STALLED_TASK = "calbridge.retry_stalled"
CLEANUP_TASK = "calbridge.cleanup"
CLEANUP_CRON = "17 * * * *"  # hourly (at a minute no other schedule favours)
# A stored /users/self is trusted a day (cycle.PROFILE_MAX_AGE); unused this long, it is dropped.
PROFILES_KEPT = timedelta(days=2)
STALLED_EVERY = 5  # seconds between looks for the jobs of dead replicas, beside each dispatch
MAX_BACKOFF = timedelta(hours=1)
STALLED_LOCK = lock_key("calbridge:requeue-stalled-jobs")  # one requeuer at a time
# The job worker stops when the database goes away (a PostgreSQL restart or failover): it is
# started again after 1 s, then 2, 4 … up to 30 s between attempts while the database is away.
WORKER_RESTART_FIRST, WORKER_RESTART_MAX = 1.0, 30.0
WORKER_UP_AFTER = 2.0  # a restarted worker still running this long counts as up (/healthz)


class RetryLater(Exception):
    """A sync to try again after a while (Canvas or the database failed, the account busy)."""


def stop_reason(exc: BaseException) -> str:
    """Why the job worker stopped, in one line: the engine's error and the first line of its
    cause (the database error the engine wrapped)."""

    def line(error: BaseException) -> str:
        first = (str(error).strip().splitlines() or ["no detail"])[0]
        return f"{type(error).__name__}: {first}"

    cause = exc.__cause__
    return line(exc) + (f" ({line(cause)})" if cause is not None else "")


def conninfo(url: str) -> str:
    """The libpq URL of an SQLAlchemy PostgreSQL URL (``postgresql+psycopg://…``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise SetupError("cluster mode needs [state] url on PostgreSQL", setting="state.url")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def jitter_of(interval: timedelta) -> float:
    """Seconds of random delay added to an interval: as in single-process mode."""
    return min(interval.total_seconds() * 0.1, 60.0)


class Cluster:
    """The job engine of one replica. ``run_account`` runs one account's cycle (the daemon's,
    with its health and logs); ``accounts`` lists the accounts now (config + people);
    ``refresh`` re-reads the connected people (a job for someone this replica does not know
    yet)."""

    def __init__(
        self,
        config: ClusterConfig,
        url: str,
        state: StateStore,
        *,
        replica: str,
        accounts: Callable[[], list[AccountConfig]],
        run_account: Callable[[AccountConfig], Awaitable[AccountResult]],
        refresh: Callable[[], Awaitable[None]],
    ) -> None:
        self.config = config
        self.info = conninfo(url)
        self.state = state
        self.replica = replica
        self.accounts = accounts
        self.run_account = run_account
        self.refresh = refresh
        self.listen = ""
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            # the engine logs every job start and end at INFO: a line per account per interval
            logging.getLogger("procrastinate").setLevel(logging.WARNING)
        self.started_at = datetime.now(UTC)
        pool_size = config.concurrency + 4  # jobs, LISTEN, heartbeat, the periodic deferrer
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=self.info, min_size=2, max_size=pool_size
            ),
            periodic_defaults={"max_delay": 60},
        )
        self._locks = AsyncConnectionPool(
            self.info, min_size=0, max_size=config.concurrency, open=False
        )
        self._register()
        self.worker: Worker | None = None
        self.worker_down: str | None = None  # why the job worker is stopped, until it restarts
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = asyncio.Event()  # set by stop(): the worker is not started again

    # --- the tasks ----------------------------------------------------------------------------

    def _register(self) -> None:
        app, config = self.app, self.config
        every = int(config.dispatch_every.total_seconds())

        @app.task(
            name=SYNC_TASK,
            queue=QUEUE,
            pass_context=True,
            retry=procrastinate.RetryStrategy(
                max_attempts=config.retries,
                exponential_wait=5,
                retry_exceptions={RetryLater},
            ),
        )
        async def sync_account(
            context: procrastinate.JobContext, account_id: str, due: float
        ) -> None:
            await self.sync(account_id, due, context.job.attempts)

        self._sync_task = sync_account

        @app.periodic(cron=_cron(every), periodic_id="dispatch")
        @app.task(name=DISPATCH_TASK, queue=QUEUE, lock=DISPATCH_TASK, queueing_lock=DISPATCH_TASK)
        async def dispatch(timestamp: int) -> None:
            await self.dispatch()

        @app.periodic(cron=_cron(STALLED_EVERY), periodic_id="stalled")
        @app.task(name=STALLED_TASK, queue=QUEUE, lock=STALLED_TASK, queueing_lock=STALLED_TASK)
        async def retry_stalled(timestamp: int) -> None:
            await self.retry_stalled()

        @app.periodic(cron=CLEANUP_CRON, periodic_id="cleanup")
        @app.task(name=CLEANUP_TASK, queue=QUEUE, lock=CLEANUP_TASK, queueing_lock=CLEANUP_TASK)
        async def cleanup(timestamp: int) -> None:
            await self.cleanup()

    async def cleanup(self) -> tuple[int, int]:
        """Delete the ended jobs: succeeded ones, failed (or cancelled, aborted) ones whose
        last event is older than ``keep_failed_jobs``; and stale stored profiles. How many
        jobs succeeded and failed were deleted."""
        keep = self.config.keep_failed_jobs
        async with self.app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
            cur = await conn.execute(
                "WITH gone AS (DELETE FROM procrastinate_jobs j WHERE j.queue_name = %s AND ("
                "j.status = 'succeeded' OR (j.status IN ('failed', 'cancelled', 'aborted') "
                "AND NOT EXISTS (SELECT 1 FROM procrastinate_events e "
                "WHERE e.job_id = j.id AND e.at >= now() - %s))) RETURNING j.status) "
                "SELECT count(*) FILTER (WHERE status = 'succeeded'), "
                "count(*) FILTER (WHERE status <> 'succeeded') FROM gone",
                (QUEUE, keep),
            )
            row = await cur.fetchone()
        succeeded, failed = (int(row[0]), int(row[1])) if row else (0, 0)
        profiles = await asyncio.to_thread(
            self.state.profiles.forget_older, datetime.now(UTC) - PROFILES_KEPT
        )
        if succeeded or failed or profiles:
            log.info(
                "cleanup: deleted %d succeeded and %d failed jobs (kept %s), %d stale profiles",
                succeeded,
                failed,
                keep,
                profiles,
            )
        return succeeded, failed

    async def dispatch(self) -> list[Due]:
        """Queue a sync job for every due account; the accounts claimed."""
        accounts = {a.id: a for a in self.accounts()}

        def advance(account: AccountConfig) -> Callable[[datetime], datetime]:
            interval = account.poll_interval
            return lambda now: (
                now + interval + timedelta(seconds=random.uniform(0, jitter_of(interval)))
            )

        await self._requeue_stalled()  # a dead replica's jobs: back in the queue at once
        in_flight = await self._in_flight()
        now = datetime.now(UTC)
        claimed = await asyncio.to_thread(
            self.state.cluster.claim_due,
            now,
            {a: advance(acc) for a, acc in accounts.items()},
            in_flight,
        )
        await self._defer(claimed)
        await self._depth()
        return claimed

    async def _defer(self, claimed: list[Due]) -> None:
        """One job per claimed account, in one statement; an account whose job still waits
        in the queue gets none (its ``queueing_lock``)."""
        if not claimed:
            return
        async with self.app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
            cur = await conn.execute(
                "SELECT queueing_lock FROM procrastinate_jobs "
                "WHERE status = 'todo' AND queueing_lock = ANY(%s)",
                ([d.account_id for d in claimed],),
            )
            waiting = {row[0] for row in await cur.fetchall()}
        for account_id in sorted(waiting):
            log.info("account %s: a sync is still waiting in the queue; none added", account_id)
        jobs = [
            self._sync_task.configure(lock=d.account_id, queueing_lock=d.account_id).make_new_job(
                account_id=d.account_id, due=d.due_at.timestamp()
            )
            for d in claimed
            if d.account_id not in waiting
        ]
        try:
            await self.app.job_manager.batch_defer_jobs_async(jobs)
        except engine_errors.AlreadyEnqueued:  # one got queued meanwhile: one by one then
            for job in jobs:
                with contextlib.suppress(engine_errors.AlreadyEnqueued):
                    await self.app.job_manager.defer_job_async(job)

    async def _in_flight(self) -> set[str]:
        """The accounts with a sync job waiting in the queue or running."""
        async with self.app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
            cur = await conn.execute(
                "SELECT DISTINCT lock FROM procrastinate_jobs "
                "WHERE status IN ('todo', 'doing') AND task_name = %s AND lock IS NOT NULL",
                (SYNC_TASK,),
            )
            return {str(row[0]) for row in await cur.fetchall()}

    async def _depth(self) -> None:
        async with self.app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
            cur = await conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo' AND task_name = %s",
                (SYNC_TASK,),
            )
            row = await cur.fetchone()
        metrics.QUEUE_DEPTH.set(row[0] if row else 0)

    async def retry_stalled(self) -> int:
        """Queue again the jobs of replicas whose heartbeat stopped, and forget replicas long
        gone; how many jobs."""
        count = await self._requeue_stalled()
        gone = await asyncio.to_thread(
            self.state.cluster.forget_replicas,
            datetime.now(UTC) - self.config.stalled_after * 10,
        )
        if gone:
            log.info("forgot %d replicas not seen for a long time", gone)
        return count

    async def _requeue_stalled(self) -> int:
        """Queue again the jobs of replicas whose heartbeat stopped; how many. One process at
        a time (a dispatch and the periodic check may run together on two replicas): under a
        transaction-scoped advisory lock, so a job queued again and already taken by a live
        replica is never seen as stalled and queued a second time under it."""
        async with (
            self.app.connector.pool.connection() as conn,  # type: ignore[attr-defined]
            conn.transaction(),
        ):
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (STALLED_LOCK,))
            row = await cur.fetchone()
            if not (row and row[0]):
                return 0  # another replica is at it right now
            return await self._requeue_stalled_locked()

    async def _requeue_stalled_locked(self) -> int:
        stalled = await self.app.job_manager.get_stalled_jobs(
            seconds_since_heartbeat=self.config.stalled_after.total_seconds()
        )
        count = 0
        for job in stalled:
            try:
                await self.app.job_manager.retry_job(job)
            except engine_errors.UniqueViolation:
                # a newer job of the account waits already (queued while this one hung): the
                # stalled one is closed as failed, the waiting one runs once the lock is free
                with contextlib.suppress(engine_errors.ConnectorException):
                    await self.app.job_manager.finish_job(job, Status.FAILED, delete_job=False)
            except engine_errors.ConnectorException:
                continue  # no longer running (it ended meanwhile)
            log.warning(
                "job %s (%s %s): its replica stopped answering; queued again",
                job.id,
                job.task_name,
                job.task_kwargs.get("account_id", ""),
            )
            count += 1
        return count

    def _account(self, account_id: str) -> AccountConfig | None:
        return next((a for a in self.accounts() if a.id == account_id), None)

    async def sync(self, account_id: str, due: float, attempts: int) -> None:
        """One account's job: its cycle under the account's advisory lock."""
        started = time.time()
        if attempts:
            metrics.JOBS_RETRIED.inc()
        else:
            metrics.JOB_LAG.observe(max(0.0, started - due))
        account = self._account(account_id)
        if account is None:  # connected on another replica a moment ago?
            await self.refresh()
            account = self._account(account_id)
        if account is None:
            log.info("account %s: no longer configured or connected; job dropped", account_id)
            return
        try:
            async with self._locks.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    "SELECT pg_try_advisory_xact_lock(%s)", (account_lock_key(account_id),)
                )
                row = await cur.fetchone()
                if not (row and row[0]):
                    metrics.JOBS.labels("busy").inc()
                    raise RetryLater(f"account {account_id}: another process is syncing it")
                result = await self.run_account(account)  # no lease: this lock is the account's
        except (psycopg.Error, PoolTimeout) as exc:  # the database went away: try again later
            metrics.JOBS.labels("failed").inc()
            raise RetryLater(f"account {account_id}: the database failed: {exc}") from None
        now = datetime.now(UTC)
        outcome = str(result.state)
        # next due one interval after this sync began (not after it was queued): a queue that
        # fell behind never makes two polls of an account closer than its interval
        interval = account.poll_interval
        after = timedelta(seconds=random.uniform(0, jitter_of(interval)))
        next_due = datetime.fromtimestamp(started, UTC) + interval + after
        try:
            await asyncio.to_thread(
                self.state.cluster.record_sync, account_id, now, self.replica, outcome, next_due
            )
        except BridgeError as exc:
            log.warning("account %s: cannot record the sync: %s", account_id, exc)
        if result.ok:
            metrics.JOBS.labels("ok").inc()
            return
        metrics.JOBS.labels("busy" if result.state is AccountState.BUSY else "failed").inc()
        await self.refresh()
        if self._account(account_id) is None:  # e.g. Canvas refused their token: reconnect
            return
        if attempts >= self.config.retries:  # given up: back off beyond the next interval
            delay = min(
                account.poll_interval * 2 ** (attempts + 1), max(MAX_BACKOFF, account.poll_interval)
            )
            await asyncio.to_thread(self.state.cluster.postpone, account_id, now + delay)
            log.info("account %s: next attempt in %s", account_id, delay)
            return
        raise RetryLater(f"account {account_id}: {result.error or result.state}")

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, listen: str) -> None:
        self.listen = listen
        await self.app.open_async()
        await self._locks.open(wait=True)
        self.app.perform_import_paths()
        self._tasks = [
            asyncio.create_task(self._work(), name="cluster worker"),
            asyncio.create_task(self._announce(), name="cluster replica"),
        ]
        log.info(
            "cluster mode: replica %s, %d jobs at once, accounts queued every %gs",
            self.replica,
            self.config.concurrency,
            self.config.dispatch_every.total_seconds(),
        )

    def _new_worker(self) -> Worker:
        return Worker(
            app=self.app,
            queues=[QUEUE],
            name=self.replica,
            concurrency=self.config.concurrency,
            install_signal_handlers=False,
            update_heartbeat_interval=self.config.heartbeat.total_seconds(),
            stalled_worker_timeout=self.config.stalled_after.total_seconds(),
            delete_jobs="successful",
            fetch_job_polling_interval=1.0,
        )

    async def _work(self) -> None:
        """Run the job worker until :meth:`stop`; when it stops by itself (the database went
        away: its heartbeat, listener or fetch failed) start a new one, with backoff."""
        delay = WORKER_RESTART_FIRST
        while not self._stopping.is_set():
            self.worker = self._new_worker()
            began = time.monotonic()
            try:
                run = asyncio.ensure_future(self.worker.run())
                # still running after a moment: it reached the database, healthy again
                done, _ = await asyncio.wait({run}, timeout=WORKER_UP_AFTER)
                if not done:
                    self.worker_down = None
                await run
                reason = "the engine stopped it; its error is logged above"
            except Exception as exc:  # the engine wraps database errors in its own
                reason = stop_reason(exc)
            if self._stopping.is_set():
                return
            if time.monotonic() - began > WORKER_RESTART_MAX:
                delay = WORKER_RESTART_FIRST  # it ran for a while: this is a new failure
            log.warning("cluster: job worker stopped (%s); starting it again in %gs", reason, delay)
            metrics.WORKER_RESTARTS.inc()
            self.worker_down = f"job worker stopped ({reason}); restarting in {delay:g}s"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, WORKER_RESTART_MAX)
            # drop the pooled connections the database cut, instead of failing on each in turn
            for pool in (self.app.connector.pool, self._locks):  # type: ignore[attr-defined]
                with contextlib.suppress(Exception):
                    await pool.check()

    @property
    def running(self) -> bool:
        """Syncing accounts: the job worker runs (not waiting to be started again)."""
        return bool(self._tasks) and not self._tasks[0].done() and self.worker_down is None

    async def _announce(self) -> None:
        """This replica in ``cluster_replicas`` (for ``calbridge cluster status``)."""
        while True:
            worker_id = self.worker.worker_id if self.worker is not None else None
            try:
                await asyncio.to_thread(
                    self.state.cluster.replica_seen,
                    self.replica,
                    self.listen,
                    worker_id,
                    self.started_at,
                    datetime.now(UTC),
                )
            except BridgeError as exc:
                log.warning("cluster: cannot record this replica: %s", exc)
            await asyncio.sleep(self.config.heartbeat.total_seconds())

    async def stop(self) -> None:
        """Finish the running jobs (a SIGTERM is a graceful stop), then leave the cluster."""
        self._stopping.set()
        if self.worker is not None:
            self.worker.stop()
        for task in self._tasks[1:]:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            await asyncio.to_thread(self.state.cluster.replica_gone, self.replica)
        except BridgeError as exc:
            log.warning("cluster: cannot remove this replica: %s", exc)
        await self._locks.close()
        await self.app.close_async()

    async def due_now(self, account_ids: list[str]) -> None:
        """Sync these accounts at the next dispatch (their feeds or calendars changed)."""
        if account_ids:
            await asyncio.to_thread(self.state.cluster.due_now, account_ids, datetime.now(UTC))


def _cron(seconds: int) -> str:
    """Every ``seconds`` (a divisor of 60) in procrastinate's 6-column cron."""
    if seconds >= 60:
        return "* * * * *"
    return f"* * * * * */{seconds}"


# --- calbridge cluster status ---------------------------------------------------------------

OVERDUE_FACTOR = 1.5  # an account not synced within 1.5 poll intervals (+ jitter) is overdue


def overdue(
    last_sync: datetime | None, interval: timedelta, now: datetime, since: datetime
) -> bool:
    """Whether an account waits too long: its last sync (or, never synced, the cluster's
    oldest replica start) lies more than 1.5 poll intervals plus the jitter in the past."""
    limit = interval * OVERDUE_FACTOR + timedelta(seconds=jitter_of(interval))
    return now - (last_sync or since) > limit


def status(
    state: StateStore, accounts: list[AccountConfig], config: ClusterConfig
) -> dict[str, Any]:
    """What ``calbridge cluster status`` shows: the replicas and their heartbeats, the queue,
    and each account's last sync, the replica that ran it, and whether it is overdue."""
    from sqlalchemy import text

    now = datetime.now(UTC)
    with state.session() as s:
        installed = s.execute(text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")).scalar()
        heartbeats: dict[int, datetime] = {}
        queue = {"waiting": 0, "waiting_to_retry": 0, "running": 0, "failed": 0}
        if installed:
            heartbeats = {
                int(row[0]): row[1].astimezone(UTC)
                for row in s.execute(text("SELECT id, last_heartbeat FROM procrastinate_workers"))
            }
            for name, count in s.execute(
                text(
                    "SELECT CASE WHEN status = 'todo' AND scheduled_at > now() "
                    "THEN 'waiting_to_retry' WHEN status = 'todo' THEN 'waiting' "
                    "WHEN status = 'doing' THEN 'running' ELSE 'failed' END, count(*) "
                    "FROM procrastinate_jobs WHERE task_name = :task "
                    "AND status IN ('todo', 'doing', 'failed') GROUP BY 1"
                ),
                {"task": SYNC_TASK},
            ):
                queue[str(name)] = int(count)
    replicas = []
    for replica in state.cluster.replicas():
        beat = heartbeats.get(replica.worker_id) if replica.worker_id is not None else None
        age = (now - beat).total_seconds() if beat is not None else None
        replicas.append(
            {
                "name": replica.name,
                "listen": replica.listen,
                "worker_id": replica.worker_id,
                "started_at": replica.started_at.isoformat(),
                "heartbeat_at": beat.isoformat() if beat is not None else None,
                "heartbeat_age": round(age, 1) if age is not None else None,
                "alive": age is not None and age < config.stalled_after.total_seconds(),
            }
        )
    alive = [r for r in replicas if r["alive"]]
    since = min((datetime.fromisoformat(str(r["started_at"])) for r in alive), default=now)
    schedule = state.cluster.schedule()
    rows = []
    for account in accounts:
        row = schedule.get(account.id)
        last = row.last_sync_at if row is not None else None
        rows.append(
            {
                "id": account.id,
                "poll_interval": account.poll_interval.total_seconds(),
                "last_sync": last.isoformat() if last is not None else None,
                "last_sync_by": row.last_sync_by if row is not None else None,
                "last_outcome": row.last_outcome if row is not None else None,
                "next_due": row.due_at.isoformat() if row is not None else None,
                "overdue": overdue(last, account.poll_interval, now, since),
            }
        )
    return {
        "now": now.isoformat(),
        "replicas": replicas,
        "replicas_alive": len(alive),
        "queue": queue,
        "accounts_total": len(rows),
        "accounts_overdue": sum(1 for r in rows if r["overdue"]),
        "accounts": rows,
    }
