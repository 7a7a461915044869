"""``calbridge run``: the scheduler and the feed server in one asyncio process, until SIGTERM.

* one APScheduler job per account at its poll interval, with jitter, never two at once
  (``max_instances=1``), missed runs coalesced; a failed poll backs off exponentially;
* a lease in the state store per account, so a one-off ``calbridge sync`` in another process
  never runs the same account at the same time;
* systemd: READY=1 once the HTTP server listens, WATCHDOG=1 while the loop is alive,
  RELOADING=1 on SIGHUP (the config is re-read; a bad new config keeps the old one),
  STOPPING=1 on SIGTERM;
* ``[cluster] enabled``: no APScheduler; a job engine in PostgreSQL shares the accounts
  between the replicas (:mod:`bridge.daemon.cluster`);
* feeds on ``[http] listen``, /healthz and /metrics on ``[http] admin_listen``; feed secrets
  re-read from the state store every :data:`SECRET_REFRESH` seconds (and on SIGHUP), so
  ``calbridge feeds rotate-secret`` takes effect at once whatever Canvas is doing;
* on PostgreSQL, feeds saved and secrets rotated by another process (a replica, a one-off
  command) are announced (LISTEN/NOTIFY) and served here within about a second, with the same
  body and ETag (:mod:`bridge.state.listen`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bridge.canvas.pool import CanvasPool
from bridge.config import (
    AccountConfig,
    Settings,
    admin_token,
    load_config,
    state_vault,
    warn_permissions,
)
from bridge.daemon.cluster import Cluster
from bridge.daemon.cycle import CANVAS_POOL, AccountResult, Syncer
from bridge.daemon.health import DaemonHealth
from bridge.daemon.logs import register_secret
from bridge.daemon.notify import Notifier
from bridge.daemon.people import People
from bridge.daemon.portal import DaemonPortal
from bridge.errors import BridgeError, StateUnavailable
from bridge.model.outcomes import AccountState, TargetState
from bridge.model.people import is_person_key
from bridge.state import StateStore, open_state
from bridge.state.cluster import account_lock_key
from bridge.state.db import is_postgresql
from bridge.state.listen import FeedChanges
from bridge.state.schema import FeedSecretRow
from bridge.web.admin import create_admin_app
from bridge.web.app import create_app
from bridge.web.portal import PortalOptions
from bridge.web.served import ServedFeeds
from bridge.web.server import WebServer, connection_cap

log = logging.getLogger("bridge.daemon")

MAX_BACKOFF = timedelta(hours=1)
SECRET_REFRESH = 2.0  # seconds between checks for rotated feed secrets


LEASE_TTL = timedelta(seconds=60)  # a holder that stops renewing is presumed dead after this
LEASE_RENEW = 20.0  # seconds between renewals while a cycle runs


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_alive(holder: str) -> bool:
    """Whether the process holding a lease may still be alive. On this host a PID that no
    longer exists is dead at once (the rerun right after a ``kill -9`` proceeds); a holder
    on another host is trusted until its lease expires (it renews every 20 s)."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    return True


async def run_leased(
    state: StateStore,
    syncer: Syncer,
    account: AccountConfig,
    *,
    dry_run: bool = False,
    wait: float = 0.0,
) -> AccountResult:
    """Run one account's cycle under its lease, renewed while it runs. The result's state is
    BUSY when another live process holds the lease for longer than ``wait`` seconds. On
    PostgreSQL the lease is the account's advisory lock (the one cluster mode's jobs take):
    released by PostgreSQL at once when its holder dies, on whatever host."""
    if state.is_postgresql:
        return await _run_advisory(state, syncer, account, dry_run=dry_run, wait=wait)
    name, holder = f"poll:{account.id}", holder_id()

    def take() -> bool:
        return state.acquire_lease(name, holder, LEASE_TTL, holder_alive)

    deadline = asyncio.get_running_loop().time() + wait
    while not await asyncio.to_thread(take):
        if asyncio.get_running_loop().time() >= deadline:
            return AccountResult(
                account.id, AccountState.BUSY, error="another process is syncing this account"
            )
        await asyncio.sleep(0.5)

    async def renew() -> None:
        while True:
            await asyncio.sleep(LEASE_RENEW)
            await asyncio.to_thread(take)

    renewing = asyncio.create_task(renew())
    try:
        return await syncer.sync_account(account, dry_run=dry_run)
    finally:
        renewing.cancel()
        await asyncio.to_thread(state.release_lease, name, holder)


async def _run_advisory(
    state: StateStore, syncer: Syncer, account: AccountConfig, *, dry_run: bool, wait: float
) -> AccountResult:
    key = account_lock_key(account.id)
    deadline = asyncio.get_running_loop().time() + wait
    while (conn := await asyncio.to_thread(state.try_advisory_lock, key)) is None:
        if asyncio.get_running_loop().time() >= deadline:
            return AccountResult(
                account.id, AccountState.BUSY, error="another process is syncing this account"
            )
        await asyncio.sleep(0.5)
    try:
        return await syncer.sync_account(account, dry_run=dry_run)
    finally:
        await asyncio.to_thread(state.release_advisory_lock, conn, key)


def _outputs(settings: Settings) -> dict[str, tuple[object, ...]]:
    """What each account's cycle writes: its feeds and calendars, as they are configured (one
    walk of the config for all accounts, not one per account)."""
    feeds: dict[str, list[tuple[object, ...]]] = {}
    caldav: dict[str, list[tuple[object, ...]]] = {}
    for f in settings.feeds:
        feeds.setdefault(f.account, []).append((f.id, tuple(f.include), f.timezone))
    for t in settings.caldav:
        caldav.setdefault(t.account, []).append((t.id, tuple(t.include), t.timezone, t.writeback))
    return {
        account: (sorted(feeds.get(account, [])), sorted(caldav.get(account, [])))
        for account in feeds.keys() | caldav.keys()
    }


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        on_ready: Callable[[Daemon], None] | None = None,
        client_options: dict[str, object] | None = None,
    ) -> None:
        self.config = settings  # the config file's
        self.settings = settings  # …with the connected people added (People.merge)
        self.people: People | None = None
        self._accounts: tuple[Settings | None, dict[str, AccountConfig]] = (None, {})
        self.config_path = config_path
        self.on_ready = on_ready
        self.client_options = client_options or {}
        self.notifier = Notifier()
        self.feeds = ServedFeeds()
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._stop = asyncio.Event()
        self._failures: dict[str, int] = {}
        self.state: StateStore | None = None
        self.syncer: Syncer | None = None
        self.canvas = CanvasPool(CANVAS_POOL)  # Canvas connections, shared by the accounts
        self.web: WebServer | None = None
        self.admin: WebServer | None = None
        self._secrets_unreadable = False
        self.health: DaemonHealth | None = None
        self.cluster: Cluster | None = None  # cluster mode: the job engine instead of APScheduler
        self._due_now: list[str] = []  # cluster mode: accounts whose outputs just changed
        self._background: set[asyncio.Future[None]] = set()

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        url = self.settings.state.database_url()
        try:
            password = make_url(url).password  # discouraged, but never logged if given
        except (ArgumentError, ValueError):
            password = None  # open_state says what is wrong with the URL
        if password:
            register_secret(str(password))
        warn_permissions(self.settings, self.config_path)
        vault = state_vault(self.config.state)
        self.state = await asyncio.to_thread(open_state, url, vault)
        self.people = People(self.state, self.config)
        self.settings = (await asyncio.to_thread(self.people.merge, self.config)).settings
        self.syncer = Syncer(
            self.settings,
            self.state,
            self.feeds,
            client_options=self.client_options,
            people=self.people,
            pool=self.canvas,
        )
        restored = await asyncio.to_thread(self.syncer.publish_stored)
        changes = self._listen_for_feed_changes(url)
        self.health = health = DaemonHealth(
            lambda: self.settings,
            self.state,
            self.scheduling,
            lambda: self.cluster.worker_down if self.cluster is not None else None,
        )
        self.web, self.admin = self._web_servers(health)
        await self.web.start()
        if self.admin is not None:
            await self.admin.start()
        secrets_task = asyncio.create_task(self._watch_feed_secrets())
        if self.config.cluster.enabled:
            self.cluster = self._cluster(url)
            await self.cluster.start(self.web.url)
        else:
            self._schedule_all()
            self.scheduler.start()
        log.info(
            "calbridge listening on %s; %d accounts, %d feeds (%d served from the last run)",
            self.web.url,
            len(self.settings.accounts),
            len(self.settings.feeds),
            restored,
        )
        self.notifier.ready(f"serving {len(self.settings.feeds)} feeds on {self.web.url}")
        if self.on_ready is not None:
            self.on_ready(self)
        watchdog = asyncio.create_task(self._watchdog())
        try:
            await self._stop.wait()
        finally:
            log.info("stopping")
            self.notifier.stopping()
            watchdog.cancel()
            secrets_task.cancel()
            if changes is not None:
                await asyncio.to_thread(changes.stop)
            if self.cluster is not None:
                await self.cluster.stop()
            if self.scheduler.running:
                self.scheduler.shutdown(wait=False)
            await self.web.stop()
            if self.admin is not None:
                await self.admin.stop()
            if self.syncer is not None:
                await self.syncer.aclose()  # the poll times still waiting
            await self.canvas.aclose()
            self.state.close()
        return 0

    def stop(self) -> None:
        self._stop.set()

    def scheduling(self) -> bool:
        """Whether accounts are being synced: the scheduler, or the cluster's job worker."""
        return self.cluster.running if self.cluster is not None else self.scheduler.running

    def _cluster(self, url: str) -> Cluster:
        assert self.state is not None

        async def run(account: AccountConfig) -> AccountResult:
            return await self.run_account_once(account, leased=False)

        return Cluster(
            self.config.cluster,
            url,
            self.state,
            replica=holder_id(),
            accounts=lambda: list(self.settings.accounts),
            run_account=run,
            refresh=self.refresh_people,
        )

    def _web_servers(self, health: DaemonHealth) -> tuple[WebServer, WebServer | None]:
        """The public feed listener and, unless ``admin_listen = "off"``, the admin listener."""
        http = self.settings.http
        feeds = WebServer(
            create_app(self.feeds, public_url=http.base_url, portal=self._portal()),
            http.listen,
            max_connections=connection_cap(http.max_connections, share=0.9),
            header_timeout=http.header_timeout.total_seconds(),
            keepalive_timeout=http.keepalive_timeout.total_seconds(),
        )
        log.info(
            "feed listener: at most %d connections, headers within %gs",
            feeds.max_connections,
            http.header_timeout.total_seconds(),
        )
        if not http.admin_enabled:
            return feeds, None
        token = admin_token(http)
        if token is not None:
            register_secret(token)
        admin = WebServer(
            create_admin_app(health, token=token),
            http.admin_listen,
            key="http.admin_listen",
            max_connections=connection_cap(32, share=0.05),
            header_timeout=http.header_timeout.total_seconds(),
            keepalive_timeout=http.keepalive_timeout.total_seconds(),
        )
        return feeds, admin

    def _listen_for_feed_changes(self, url: str) -> FeedChanges | None:
        """On PostgreSQL, take in at once the feeds and secrets other processes change
        (replicas, one-off commands): see :mod:`bridge.state.listen`. None on SQLite."""
        assert self.state is not None
        if not is_postgresql(self.state.engine):
            return None
        loop = asyncio.get_running_loop()

        def announced(feed_ids: set[str] | None) -> None:  # in the listener's thread
            loop.call_soon_threadsafe(self._feeds_changed, feed_ids)

        changes = FeedChanges(url, announced)
        changes.start()
        return changes

    def _feeds_changed(self, feed_ids: set[str] | None) -> None:
        task = asyncio.ensure_future(self.adopt_feeds(feed_ids))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def adopt_feeds(self, feed_ids: set[str] | None) -> None:
        """Serve the feeds another process saved, under their secrets as stored now (a
        rotation is announced too); ``None``: check them all."""
        if self.syncer is None:
            return
        if feed_ids is None or any(is_person_key(f) for f in feed_ids):
            await self.refresh_people()  # a person's feed keeps its secret with the person
        try:
            changed = await asyncio.to_thread(self.syncer.adopt_stored, feed_ids)
        except BridgeError as exc:
            log.warning("feeds changed elsewhere: cannot read the state store: %s", exc)
            return
        if feed_ids is None:
            await self.refresh_feed_secrets()
        for feed_id in changed:
            log.info("feed %s: now serving what another process saved", feed_id)

    def _portal(self) -> tuple[DaemonPortal, PortalOptions] | None:
        """Institution mode's personal pages, when the config has an ``[oauth]`` section. The
        session cookies are signed with a key derived from the ``[state]`` encryption key:
        every replica given the same keys accepts them, and nothing new to configure."""
        oauth = self.config.oauth
        if oauth is None or self.people is None or self.state is None:
            return None
        vault = state_vault(self.config.state)
        assert vault is not None  # the schema requires a key source with [oauth]
        options = PortalOptions(
            public_url=self.config.http.base_url,
            session_key=vault.derive_key("calbridge session cookies v1"),
            session_lifetime=oauth.session_lifetime.total_seconds(),
            sign_in_burst=oauth.sign_in_per_minute,
            sign_in_per_minute=float(oauth.sign_in_per_minute),
        )

        async def refresh() -> None:
            await self.refresh_people()
            await self.refresh_feed_secrets()

        def target_health(target_id: str) -> dict[str, object] | None:
            return self.health.targets.get(target_id) if self.health is not None else None

        service = DaemonPortal(
            self.people,
            self.state,
            refresh=refresh,
            target_health=target_health,
            local_calendars=oauth.local_calendars_allowed(self.config.http.base_url),
        )
        return service, options

    async def _watch_feed_secrets(self) -> None:
        """Serve each feed under the secret the state store holds, checked every few seconds:
        ``calbridge feeds rotate-secret`` (another process) takes effect here within
        :data:`SECRET_REFRESH` seconds, whatever Canvas is doing."""
        while True:
            await asyncio.sleep(SECRET_REFRESH)
            await self.refresh_people()
            await self.refresh_feed_secrets()

    async def refresh_feed_secrets(self) -> None:
        if self.state is None:
            return
        try:
            stored = await asyncio.to_thread(self.state_feed_secrets)
        except BridgeError as exc:
            if not self._secrets_unreadable:  # once per outage, not every few seconds
                log.warning("feed secrets: cannot read the state store: %s", exc)
            self._secrets_unreadable = True
            return
        self._secrets_unreadable = False
        for feed_id, secret in stored.items():
            if self.feeds.secret_of(feed_id) not in (None, secret):
                self.feeds.set_secret(feed_id, secret)
                log.info("feed %s: now served under its new secret", feed_id)

    def state_feed_secrets(self) -> dict[str, str]:
        assert self.state is not None
        with self.state.session() as s:
            found = {row.feed_id: row.secret for row in s.scalars(select(FeedSecretRow))}
        if self.people is not None:  # a person's feed keeps its secret with the person
            for feed in self.settings.feeds:
                secret = self.people.feed_secret(feed.id)
                if secret is not None:
                    found[feed.id] = secret
        return found

    async def refresh_people(self) -> None:
        """Take in what changed among the connected people since the last look (connected,
        disabled, removed, reconnect needed, a feed or calendar added, a secret rotated):
        new accounts are polled at once, gone ones leave the schedule, feeds no longer
        anyone's answer 404."""
        if self.people is None or self.config.oauth is None:
            return
        try:
            merged = await asyncio.to_thread(self.people.merge, self.config)
        except BridgeError as exc:
            if not self._secrets_unreadable:
                log.warning("people: cannot read the state store: %s", exc)
            return
        if merged.settings is not self.settings:  # the same object: nobody changed
            self._apply(merged.settings)
        if self.cluster is not None and self._due_now:
            due, self._due_now = self._due_now, []
            await self.cluster.due_now(due)

    def _apply(self, new: Settings) -> None:
        """Run ``new`` (config + people) from now on: schedule what is new, drop what is gone,
        run at once an account whose feeds or calendars changed."""
        old = self.settings
        self.settings = new
        if self.syncer is not None:
            self.syncer.settings = new
        for feed_id in self.feeds.retain({f.id for f in new.feeds}):
            log.info("feed %s is no longer configured or connected; not served", feed_id)
        if self.cluster is not None:  # new accounts are queued by the next dispatch
            known = {o.id for o in old.accounts}
            outputs_before, outputs_after = _outputs(old), _outputs(new)
            changed = [
                a.id
                for a in new.accounts
                if a.id in known and outputs_before.get(a.id) != outputs_after.get(a.id)
            ]
            self._due_now = changed
            return
        if not self.scheduler.running:
            return
        before = {a.id for a in old.accounts}
        after = {a.id: a for a in new.accounts}
        now = datetime.now(UTC)
        for account_id in before - after.keys():
            if self.scheduler.get_job(f"poll:{account_id}") is not None:
                self.scheduler.remove_job(f"poll:{account_id}")
            self._failures.pop(account_id, None)
        for index, account_id in enumerate(sorted(after.keys() - before)):
            self._schedule(after[account_id], index, now)
        outputs_before, outputs_after = _outputs(old), _outputs(new)
        for account_id in sorted(before & after.keys()):
            if outputs_before.get(account_id) != outputs_after.get(account_id):
                job = self.scheduler.get_job(f"poll:{account_id}")
                if job is not None:
                    job.modify(next_run_time=now)

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def reload(self) -> None:
        if self.config_path is None:
            return
        self.notifier.reloading()
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
        except BridgeError as exc:
            log.error("reload: keeping the old configuration: %s", exc)
        else:
            if (
                new.http != self.config.http
                or new.state != self.config.state
                or new.oauth != self.config.oauth
            ):
                log.warning(
                    "reload: [http], [state] and [oauth] changes take effect after a restart"
                )
                new = new.model_copy(update={"oauth": self.config.oauth})
            self.config = new
            if self.people is not None:
                new = (await asyncio.to_thread(self.people.merge, new)).settings
            self.settings = new
            if self.syncer is not None:
                self.syncer.settings = new
            for feed_id in self.feeds.retain({f.id for f in new.feeds}):
                log.info("reload: feed %s is no longer in the configuration; not served", feed_id)
            if self.cluster is None:
                self._schedule_all()
            log.info("reload: %d accounts, %d feeds", len(new.accounts), len(new.feeds))
        await self.refresh_feed_secrets()
        self.notifier.send("READY=1", "STATUS=configuration reloaded")

    # --- scheduling -------------------------------------------------------------------------

    def _schedule_all(self) -> None:
        self.scheduler.remove_all_jobs()
        now = datetime.now(UTC)
        for index, account in enumerate(self.settings.accounts):
            self._schedule(account, index, now)

    def _schedule(self, account: AccountConfig, index: int, now: datetime) -> None:
        interval = account.poll_interval
        jitter = min(interval.total_seconds() * 0.1, 60)
        self.scheduler.add_job(
            self._run_account,
            IntervalTrigger(seconds=interval.total_seconds(), jitter=jitter, timezone=UTC),
            args=[account.id],
            id=f"poll:{account.id}",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=int(interval.total_seconds()),
            next_run_time=now + timedelta(seconds=0.2 * index),  # first poll at once, staggered
            replace_existing=True,
        )

    def _state_unavailable(self, account_id: str, exc: StateUnavailable) -> None:
        """The state database is locked, full or failing: say so, and in /healthz."""
        log.error("account %s: the cycle stopped: %s", account_id, exc)
        if self.health is not None:
            self.health.state_error = str(exc)

    def _record_targets(self, result: AccountResult) -> None:
        """CalDAV targets in /healthz: degraded while a safety stop waits, write-backs are
        pending, objects could not be handled, or the last sync failed."""
        if self.health is None:
            return
        now = datetime.now(UTC).isoformat()
        for report in result.targets:
            previous = self.health.targets.get(report.target_id, {})
            state = report.state
            healthy = state is TargetState.OK
            self.health.targets[report.target_id] = {
                "status": "ok" if healthy else "degraded",
                "state": str(state),
                "last_success": now if report.failure is None else previous.get("last_success"),
                "last_error": report.failure,
                "safety_stop": report.stop.describe() if report.stop else None,
                "pending_writebacks": [c.describe() for c in report.pending],
                "item_errors": [e.describe() for e in report.item_errors][:20],
            }

    def _account(self, account_id: str) -> AccountConfig | None:
        """The configured account of that id, looked up in an index of the current settings
        (rebuilt when they are replaced) rather than by walking every account each run."""
        settings, by_id = self._accounts
        if settings is not self.settings:
            by_id = {}
            for account in self.settings.accounts:
                by_id.setdefault(account.id, account)
            self._accounts = (self.settings, by_id)
        return by_id.get(account_id)

    async def run_account_once(
        self, account: AccountConfig, *, leased: bool = True
    ) -> AccountResult:
        """One cycle of ``account`` under its lease (unless the caller holds the account's
        lock already: cluster mode's jobs), recorded in /healthz; never raises."""
        assert self.state is not None and self.syncer is not None
        try:
            if leased:
                result = await run_leased(self.state, self.syncer, account)
            else:
                result = await self.syncer.sync_account(account)
        except StateUnavailable as exc:
            self._state_unavailable(account.id, exc)
            return AccountResult(account.id, AccountState.POLL_FAILED, error=str(exc))
        except Exception:
            log.exception("account %s: the cycle failed unexpectedly", account.id)
            result = AccountResult(account.id, AccountState.POLL_FAILED, error="internal error")
        if result.state is AccountState.BUSY:
            log.info("account %s: another process is syncing it; skipped this run", account.id)
            return result
        self._record_targets(result)
        if self.health is not None:
            self.health.state_error = None
        return result

    async def _run_account(self, account_id: str) -> None:
        account = self._account(account_id)
        if account is None:
            return
        result = await self.run_account_once(account)
        if result.state is AccountState.BUSY:
            return
        if result.ok:
            self._failures.pop(account_id, None)
            return
        failures = self._failures[account_id] = self._failures.get(account_id, 0) + 1
        delay = min(
            account.poll_interval * 2 ** (failures - 1), max(MAX_BACKOFF, account.poll_interval)
        )
        job = self.scheduler.get_job(f"poll:{account_id}")
        if job is not None and failures > 1:
            job.modify(next_run_time=datetime.now(UTC) + delay)
            log.info("account %s: next attempt in %s", account_id, delay)
