"""One sync cycle of one account: poll → save → render → publish → push → write back.

The safety rules live here, in order:
* a failed poll changes nothing but the account's status: the last good snapshot, feeds and
  calendars stay as they are (Canvas down never empties a calendar);
* a rendered feed and its event versions are saved in one transaction, then published;
* CalDAV targets are pushed only from a successful poll.

The parts the cycle uses (the Canvas client, the write-back ledger, each calendar) are built by
:mod:`bridge.daemon.wiring`; what a calendar should hold comes from :mod:`bridge.mapping.items`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from bridge import metrics
from bridge.canvas.poller import FetchedPoll, ParsedPages, fetch_account, needs_managed
from bridge.canvas.pool import CanvasPool, PoolOptions
from bridge.config import AccountConfig, CalDAVConfig, FeedConfig, Settings, account_token
from bridge.daemon.logs import register_secret
from bridge.daemon.skip import Inputs, Rendered, Work, decide
from bridge.daemon.status_batch import StatusBatch
from bridge.daemon.wiring import AccountWiring
from bridge.errors import BridgeError, ReconnectNeeded
from bridge.mapping import RenderCache, RenderedFeed, render_feed
from bridge.mapping.horizon import snapshot_times, stable_until
from bridge.mapping.items import calendar_items
from bridge.mapping.versions import EventVersion
from bridge.model.canvas import AccountSnapshot, Profile
from bridge.model.feed import PublishedFeed
from bridge.model.outcomes import AccountState, TargetReport, TargetState
from bridge.state import StateStore
from bridge.sync.execute import redrive
from bridge.web.served import ServedFeeds

if TYPE_CHECKING:
    from bridge.daemon.people import People

log = logging.getLogger("bridge.daemon")

# The shared Canvas connections: per Canvas origin, for all its accounts together.
CANVAS_POOL = PoolOptions(max_connections=16, timeout=30.0)
# How long ``/users/self`` is trusted before it is asked again (also asked at start-up).
PROFILE_MAX_AGE = timedelta(days=1)
# A feed's render cache and event versions are kept between cycles only from this many events
# (kept and left out): a feed of 25 events renders from scratch in ~1.5 ms, and its cache (the
# mapped events, each group's key with its times and strings) cost ~20 KiB per account and its
# versions ~1.8 KiB, kept for every account of an institution although an account whose Canvas
# answers did not change is not rendered. A smaller feed reads its versions from the state
# store when it is rendered again (one query, only when something changed).
CACHED_FROM_EVENTS = 100

# fetched_at is the snapshot's last field: its JSON is the JSON without it, plus that field
_FETCHED_AT_LAST = list(AccountSnapshot.model_fields)[-1] == "fetched_at"
_DATETIME = TypeAdapter(datetime)


def whole_snapshot_json(content: str, snapshot: AccountSnapshot) -> str:
    """``snapshot.model_dump_json()``, from ``content``, its JSON without ``fetched_at``
    (what the change check hashes) and that one field, instead of serialising it twice."""
    if not _FETCHED_AT_LAST or not content.endswith("}") or content == "{}":
        return snapshot.model_dump_json()
    fetched_at = _DATETIME.dump_json(snapshot.fetched_at).decode()
    return f'{content[:-1]},"fetched_at":{fetched_at}}}'


@dataclass(frozen=True)
class Outputs:
    """The feeds and calendars of each account, and the ids of all feeds, indexed once per
    settings object: a cycle looks up its own account's outputs instead of walking every
    feed and calendar of the config (with 10,000 accounts each walk was ~0.5 ms, several per
    account: a cycle grew with the square of the accounts)."""

    feeds: dict[str, list[FeedConfig]]
    caldav: dict[str, list[CalDAVConfig]]
    feed_ids: frozenset[str]

    @classmethod
    def of(cls, settings: Settings) -> Outputs:
        feeds: dict[str, list[FeedConfig]] = {}
        caldav: dict[str, list[CalDAVConfig]] = {}
        for feed in settings.feeds:
            feeds.setdefault(feed.account, []).append(feed)
        for target in settings.caldav:
            caldav.setdefault(target.account, []).append(target)
        return cls(feeds, caldav, frozenset(f.id for f in settings.feeds))


@dataclass
class FeedResult:
    feed_id: str
    events: int
    changed: bool
    skipped: int


@dataclass
class AccountResult:
    """One account's cycle, as values: exit codes, /healthz and logs read these."""

    account_id: str
    state: AccountState
    error: str | None = None
    requests: int = 0
    seconds: float = 0.0
    feeds: list[FeedResult] = field(default_factory=list)
    targets: list[TargetReport] = field(default_factory=list)
    work: Work | None = None  # why the cycle did its work after the poll, or SKIP

    @property
    def ok(self) -> bool:
        return self.state is AccountState.OK

    @property
    def push_failed(self) -> bool:
        return any(t.state in (TargetState.FAILED, TargetState.ITEM_ERRORS) for t in self.targets)

    @property
    def stopped(self) -> bool:
        return any(t.state is TargetState.STOPPED for t in self.targets)

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account_id,
            "state": str(self.state),
            "ok": self.ok,
            "error": self.error,
            "canvas_requests": self.requests,
            "seconds": round(self.seconds, 3),
            "feeds": [vars(f) for f in self.feeds],
            "targets": [t.as_dict() for t in self.targets],
        }


class Syncer:
    """Runs cycles for the accounts of one config against one state store and feed store."""

    def __init__(
        self,
        settings: Settings,
        state: StateStore,
        feeds: ServedFeeds,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        client_options: dict[str, Any] | None = None,
        people: People | None = None,
        pool: CanvasPool | None = None,
    ) -> None:
        """``settings`` with the connected ``people`` already merged in (see
        :meth:`People.merge`); their tokens, passwords and feed secrets come from ``people``."""
        self._settings = settings
        self._outputs: Outputs | None = None
        self.people = people
        self.state = state
        self.feeds = feeds
        self.clock = clock
        # The daemon brings its pool and closes it; otherwise this Syncer owns one (aclose).
        self._owns_pool = pool is None
        self.pool = pool or CanvasPool(CANVAS_POOL)
        self.wiring = AccountWiring(
            lambda: self.settings, state, client_options, people, pool=self.pool
        )
        self._caches: dict[str, RenderCache] = {}
        # account id -> (digest of its token, its /users/self, when asked)
        self._profiles: dict[str, tuple[str, Profile, datetime]] = {}
        # account id -> digest of the last snapshot saved (its content, not when it was fetched)
        self._saved: dict[str, str] = {}
        # feed id -> the event versions last saved with it (read from the store once)
        self._feed_versions: dict[str, dict[str, EventVersion]] = {}
        # account id -> what its last full cycle saw, and its feeds' results (see skip.py)
        self._rendered: dict[str, tuple[Rendered, list[FeedResult]]] = {}
        # account id -> its last validated poll's objects by page (only lists of 2+ pages)
        self._parsed: dict[str, ParsedPages] = {}
        # the poll times of accounts whose poll changed nothing, written together
        self.statuses = StatusBatch(state.record_poll_successes)

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        """New settings (SIGHUP, people connected or gone): the next cycle uses them."""
        if settings is not self._settings and self._rendered:
            kept = {a.id for a in settings.accounts}  # accounts gone: forget their last cycle
            self._rendered = {k: v for k, v in self._rendered.items() if k in kept}
            self._parsed = {k: v for k, v in self._parsed.items() if k in kept}
        self._settings, self._outputs = settings, None

    @property
    def outputs(self) -> Outputs:
        """The current settings' outputs by account (indexed on first use after a change)."""
        outputs = self._outputs
        if outputs is None:
            outputs = self._outputs = Outputs.of(self._settings)
        return outputs

    async def aclose(self) -> None:
        """Write the poll times waiting; close the Canvas connections, if this Syncer made
        its pool."""
        await self.statuses.aclose()
        if self._owns_pool:
            await self.pool.aclose()

    # --- start-up ---------------------------------------------------------------------------

    def publish_stored(self) -> int:
        """Serve the feeds saved by the previous run at once, before the first poll."""
        wanted = {f.id: f.account for f in self.settings.feeds}
        polled = {a: s.last_success_at for a, s in self.state.account_statuses().items()}
        count = 0
        for stored in self.state.load_feeds():
            if stored.feed_id not in wanted:
                continue
            # An unchanged feed is not saved again; its account's last good poll says when it
            # was last refreshed.
            seen = polled.get(wanted[stored.feed_id])
            if seen is not None and seen > stored.refreshed_at:
                stored = replace(stored, refreshed_at=seen)
            self.feeds.publish(stored, self.secret(stored.feed_id))
            count += 1
        return count

    def adopt_stored(self, feed_ids: set[str] | None) -> list[str]:
        """Serve what another process saved for ``feed_ids`` — a replica or a one-off
        ``calbridge sync`` on the same PostgreSQL — under the secret the store holds now. A
        feed whose stored body differs from the one served replaces it, and the event versions
        this process kept for it are forgotten (the next render reads the stored ones).
        ``None``: every feed's body, each under the secret it is served with (the caller
        refreshes all secrets at once; one query, not one per feed). The ids changed."""
        wanted = {f.id for f in self.settings.feeds}
        ids = wanted if feed_ids is None else wanted & feed_ids
        if not ids:
            return []
        stored = {feed.feed_id: feed for feed in self.state.load_feeds(ids)}
        changed = []
        for feed_id in sorted(ids):
            served, saved = self.feeds.get(feed_id), stored.get(feed_id)
            fresh = feed_ids is not None  # announced: its secret may have been rotated
            if saved is not None and (
                served is None
                or (served.etag, served.name, served.includes)
                != (saved.etag, saved.name, saved.includes)
            ):
                known = None if fresh else self.feeds.secret_of(feed_id)
                secret = known or self.secret(feed_id)
                self.feeds.publish(saved, secret)
                self._feed_versions.pop(feed_id, None)
                changed.append(feed_id)
            elif served is not None and fresh:
                secret = self.secret(feed_id)
                if self.feeds.secret_of(feed_id) != secret:
                    self.feeds.set_secret(feed_id, secret)
                    changed.append(feed_id)
        return changed

    def secret(self, feed_id: str) -> str:
        personal = self.people.feed_secret(feed_id) if self.people is not None else None
        if personal is not None:
            return personal
        secret = self.state.feed_secret(feed_id)
        register_secret(secret)
        return secret

    # --- the cycle --------------------------------------------------------------------------

    def _person(self, key: str) -> People | None:
        return self.wiring.person(key)

    def uses_managed(self, account: AccountConfig) -> bool:
        """Whether any feed or calendar of the account shows slots of groups it manages."""
        if not account.include_managed:
            return False
        index = self.outputs
        outputs = [f.include for f in index.feeds.get(account.id, ())]
        outputs += [t.include for t in index.caldav.get(account.id, ())]
        return needs_managed(outputs)

    async def poll(
        self, account: AccountConfig, *, remember: bool = True
    ) -> tuple[AccountSnapshot, int]:
        fetched, requests = await self.fetch(account, remember=remember)
        return fetched.snapshot(account.canvas_host), requests

    async def fetch(
        self, account: AccountConfig, *, remember: bool = True
    ) -> tuple[FetchedPoll, int]:
        """The account's poll, its lists not yet validated; and the requests it took.
        ``remember``: share a profile fetched now with the other processes (the store)."""
        async with self.wiring.client(account) as client:
            # who the token belongs to is asked again when the token or the Canvas changes
            # (a connected person's Canvas user is fixed by their account; their token refreshes)
            credential = account.id if self._person(account.id) else account_token(account)
            token = self.state.profiles.digest(account.canvas_url, credential)
            known = self._profiles.get(account.id)
            fresh = (
                known is not None
                and known[0] == token
                and self.clock() - known[2] < PROFILE_MAX_AGE
            )
            if not fresh:  # another replica (or this one before a restart) may have asked
                stored = await asyncio.to_thread(
                    self.state.profiles.get, token, self.clock() - PROFILE_MAX_AGE
                )
                if stored is not None:
                    known = (token, Profile.model_validate_json(stored[0]), stored[1])
                    self._profiles[account.id], fresh = known, True
            try:
                options = replace(
                    account.poll_options(), include_managed=self.uses_managed(account)
                )
                fetched = await fetch_account(
                    client, options, user=known[1] if fresh and known is not None else None
                )
            finally:
                requests = client.requests_made
        if not fresh:
            asked = self.clock()
            self._profiles[account.id] = (token, fetched.user, asked)
            if remember:
                json = fetched.user.model_dump_json()
                await asyncio.to_thread(self.state.profiles.put, token, json, asked)
        return fetched, requests

    def _validate(self, account: AccountConfig, fetched: FetchedPoll) -> AccountSnapshot:
        """The poll's snapshot, the pages unchanged since the account's last validated poll
        holding the same objects (so its render cache knows them by identity)."""
        if not account.keep_parsed_pages:
            self._parsed.pop(account.id, None)
            return fetched.snapshot(account.canvas_host)
        last = self._parsed.get(account.id) or ParsedPages()
        snapshot = fetched.snapshot(account.canvas_host, last)
        if len(last):
            self._parsed[account.id] = last
        else:
            self._parsed.pop(account.id, None)
        return snapshot

    def _inputs(self, account: AccountConfig, fetched: FetchedPoll) -> Inputs:
        feeds = self.outputs.feeds.get(account.id, [])
        return Inputs(
            pages=fetched.digest,
            profile=fetched.user,
            config=(account, *feeds),
            etags=self._served_etags(feeds),
        )

    def _served_etags(self, feeds: list[FeedConfig]) -> tuple[str | None, ...]:
        """Each feed's ETag as served now (None: not served)."""
        return tuple(None if (p := self.feeds.get(f.id)) is None else p.etag for f in feeds)

    async def sync_account(self, account: AccountConfig, *, dry_run: bool = False) -> AccountResult:
        started = time.monotonic()
        result = AccountResult(account.id, AccountState.POLL_FAILED)
        targets = self.outputs.caldav.get(account.id, [])
        try:
            fetched, result.requests = await self.fetch(account, remember=not dry_run)
            now = self.clock()
            inputs = self._inputs(account, fetched)
            last = self._rendered.get(account.id)
            work = decide(last and last[0], inputs, now, has_caldav=bool(targets), dry_run=dry_run)
            result.work = work
            snapshot = None if work.skips else self._validate(account, fetched)
        except BridgeError as exc:
            result.error = str(exc)
            result.seconds = time.monotonic() - started
            metrics.POLLS.labels(account.id, "failed").inc()
            people = self._person(account.id)
            if isinstance(exc, ReconnectNeeded) and people is not None and not dry_run:
                await asyncio.to_thread(people.reconnect_needed, account.id)
            if not dry_run:
                await self.statuses.before_write(account.id)
                failures = await asyncio.to_thread(
                    self.state.record_poll_failure, account.id, self.clock(), result.error
                )
                log.warning(
                    "account %s: poll failed (%d in a row), keeping the last good data: %s",
                    account.id,
                    failures,
                    exc,
                )
            return result
        metrics.POLLS.labels(account.id, "ok").inc()
        metrics.POLL_SECONDS.observe(time.monotonic() - started)
        if snapshot is not None and not dry_run:
            self._rendered.pop(account.id, None)  # until this cycle has done its work
        people = self._person(account.id)
        alive = people is None or dry_run or await asyncio.to_thread(people.polled, account.id, now)
        if not alive:  # removed or disabled while Canvas answered: keep nothing of theirs
            result.error = "the person was removed or disabled during the poll"
            log.info("account %s: %s; nothing kept", account.id, result.error)
            return result
        if snapshot is None:
            assert last is not None  # a skip needs a full cycle before it
            return await self._unchanged(account, result, last[1], now, started)
        if not dry_run:
            await self.statuses.before_write(account.id)
            if not await asyncio.to_thread(self._save_poll, account.id, snapshot, now):
                await self.statuses.add(account.id, now)
            metrics.LAST_POLL_SUCCESS.labels(account.id).set(now.timestamp())
        result.state = AccountState.OK
        feeds = self.outputs.feeds.get(account.id, [])
        for feed in feeds:
            result.feeds.append(
                await asyncio.to_thread(self.render_and_publish, feed, snapshot, now, dry_run)
            )
        if targets and not dry_run:
            await self._redrive(account)
        for target in targets:
            result.targets.append(await self.push_target(account, target, snapshot, now, dry_run))
        if not dry_run and not targets:
            self._remember(account, inputs, snapshot, now, result.feeds)
        result.seconds = time.monotonic() - started
        log.info(
            "account %s: polled in %.2fs with %d Canvas requests (%s); %s",
            account.id,
            result.seconds,
            result.requests,
            work,
            ", ".join(
                f"feed {f.feed_id}: {f.events} events{' (changed)' if f.changed else ''}"
                for f in result.feeds
            )
            or "no feeds",
        )
        return result

    def _remember(
        self,
        account: AccountConfig,
        inputs: Inputs,
        snapshot: AccountSnapshot,
        now: datetime,
        feeds: list[FeedResult],
    ) -> None:
        """What this full cycle saw, with the feeds as it left them: the next cycle may skip
        its work if all of it is the same (see :mod:`bridge.daemon.skip`)."""
        configs = self.outputs.feeds.get(account.id, [])
        windows = [(f.window_past, f.window_future) for f in configs]
        until = stable_until(snapshot_times(snapshot), windows, now)
        etags = self._served_etags(configs)
        self._rendered[account.id] = (Rendered(replace(inputs, etags=etags), until), feeds)

    async def _unchanged(
        self,
        account: AccountConfig,
        result: AccountResult,
        last: list[FeedResult],
        now: datetime,
        started: float,
    ) -> AccountResult:
        """The cycle of an account whose feeds cannot have changed: its success is recorded
        and each feed learns it was refreshed (no parse, render or feed write)."""
        await self.statuses.add(account.id, now)
        metrics.LAST_POLL_SUCCESS.labels(account.id).set(now.timestamp())
        result.state = AccountState.OK
        before = {f.feed_id: f for f in last}
        for feed in self.outputs.feeds.get(account.id, []):
            current = self.feeds.get(feed.id)
            if current is not None:
                self._serve(replace(current, refreshed_at=now), now)
            metrics.RENDERS.labels(feed.id, "false").inc()
            seen = before.get(feed.id)
            result.feeds.append(
                FeedResult(feed.id, seen.events if seen else 0, False, seen.skipped if seen else 0)
            )
        result.seconds = time.monotonic() - started
        log.info(
            "account %s: polled in %.2fs with %d Canvas requests; unchanged, nothing rendered",
            account.id,
            result.seconds,
            result.requests,
        )
        return result

    def _save_poll(self, account_id: str, snapshot: AccountSnapshot, now: datetime) -> bool:
        """The poll's success with its snapshot, if what Canvas said changed (True); False
        if not: then nothing is written here and the caller records the success in
        :attr:`statuses` (``last_success_at`` says when the snapshot was last seen)."""
        content = snapshot.model_dump_json(exclude={"fetched_at"})
        digest = hashlib.sha256(content.encode()).hexdigest()
        if self._saved.get(account_id) == digest:
            return False
        self.state.save_poll(account_id, whole_snapshot_json(content, snapshot), digest, now)
        self._saved[account_id] = digest
        return True

    async def _redrive(self, account: AccountConfig) -> None:
        """Write-backs with an unknown outcome are resolved first, whatever the calendars say."""
        try:
            await redrive(self.wiring.ledger(account))
        except Exception:  # never let this stop the account's feeds and calendars
            log.exception("account %s: resolving pending write-backs failed", account.id)

    async def push_target(
        self,
        account: AccountConfig,
        target: CalDAVConfig,
        snapshot: AccountSnapshot,
        now: datetime,
        dry_run: bool,
    ) -> TargetReport:
        """Sync one CalDAV calendar. This is the target's error boundary: whatever goes wrong
        is recorded in its report, never raised (other targets and the feeds go on)."""
        scope = f"caldav:{target.id}"
        try:
            calendar = self.wiring.calendar(target)
            previous = await asyncio.to_thread(self.state.load_versions, scope)
            aliases = await asyncio.to_thread(self.state.journal.aliases, target.account)
            options = target.event_options(aliases)
            items = calendar_items(snapshot, options, previous, now)
            hidden = await asyncio.to_thread(self.state.caldav.hidden, target.id)
            report = await calendar.run(
                items.desired,
                self.state.caldav,
                now=now,
                hidden=hidden,
                dry_run=dry_run,
                writeback=self.wiring.writeback(account, target, snapshot, items.events),
            )
            if not dry_run:
                await asyncio.to_thread(self.state.save_versions, scope, items.versions)
        except BridgeError as exc:
            report = TargetReport(target.id, dry_run=dry_run, failure=str(exc))
            log.warning("caldav %s: sync failed, calendar left as it was: %s", target.id, exc)
        except Exception as exc:  # a bug must not stop the other targets or the feeds
            log.exception("caldav %s: unexpected error; calendar left as it was", target.id)
            report = TargetReport(
                target.id, dry_run=dry_run, failure=f"internal error: {type(exc).__name__}"
            )
        self._observe(report, now)
        return report

    def _observe(self, report: TargetReport, now: datetime) -> None:
        for error in report.item_errors:
            metrics.ITEM_ERRORS.labels(report.target_id).inc()
            log.warning("caldav %s: %s", report.target_id, error.describe())
        if report.dry_run:
            return
        metrics.WRITEBACKS_OPEN.labels(report.target_id).set(len(report.pending))
        if report.state in (TargetState.OK, TargetState.PENDING):
            metrics.LAST_PUSH_SUCCESS.labels(report.target_id).set(now.timestamp())
        if report.failure is None:
            log.info(
                "caldav %s: %d created, %d updated, %d deleted, %d unchanged, %d requests%s%s",
                report.target_id,
                report.created,
                report.updated,
                report.deleted,
                report.unchanged,
                report.requests,
                f"; {len(report.conflicts)} conflicts" if report.conflicts else "",
                f"; {len(report.pending)} write-backs pending" if report.pending else "",
            )

    def cached_feeds(self) -> set[str]:
        """The feeds whose render cache or event versions are kept for their next render
        (only feeds of :data:`CACHED_FROM_EVENTS` events or more)."""
        return set(self._caches) | set(self._feed_versions)

    def render_and_publish(
        self, feed: FeedConfig, snapshot: AccountSnapshot, now: datetime, dry_run: bool
    ) -> FeedResult:
        scope = f"feed:{feed.id}"
        previous = self._feed_versions.get(feed.id)
        if previous is None:
            previous = self.state.load_versions(scope)
        options = feed.options(self.state.journal.aliases(feed.account))
        cache = self._caches.pop(feed.id, None) or RenderCache()
        rendered = render_feed(snapshot, options, previous, now, cache)
        if len(rendered.events) + len(rendered.skipped) >= CACHED_FROM_EVENTS:
            self._caches[feed.id] = cache  # else the next render starts from scratch
        for skipped in rendered.skipped:
            level = logging.INFO if skipped.reason.expected else logging.WARNING
            detail = f" ({skipped.detail})" if skipped.detail else ""
            log.log(
                level, "feed %s: left out %s: %s%s", feed.id, skipped.ref, skipped.reason, detail
            )
        current = self.feeds.get(feed.id)
        changed = current is None or current.body != rendered.ics
        metrics.RENDERS.labels(feed.id, str(changed).lower()).inc()
        if dry_run:
            return FeedResult(feed.id, len(rendered.events), changed, len(rendered.skipped))
        name = feed.name or f"Canvas ({feed.id})"
        if (
            current is not None
            and not changed
            and rendered.versions == previous
            and (current.name, current.includes) == (name, tuple(feed.include))
        ):
            # Nothing to save: the stored body and versions are these already. Only the
            # served feed learns it was refreshed (no re-hash, no re-compression), under the
            # secret it is served with (the daemon re-reads rotated secrets on its own). The
            # equal body the render cache holds replaces the one loaded from the state store,
            # so the two are not both kept after a restart.
            if feed.id in self.outputs.feed_ids:  # still configured (SIGHUP)
                self._serve(
                    replace(
                        current, plain=rendered.ics if current.plain else b"", refreshed_at=now
                    ),
                    now,
                )
        else:
            self._save_and_publish(feed, rendered, now, changed, current)
        if feed.id in self._caches:  # its blocks are reused only with the versions they made
            self._feed_versions[feed.id] = rendered.versions  # what the state store holds now
        else:  # a small feed reads them from the store when it is rendered again
            self._feed_versions.pop(feed.id, None)
        return FeedResult(feed.id, len(rendered.events), changed, len(rendered.skipped))

    def _serve(self, feed: PublishedFeed, now: datetime) -> None:
        """Serve ``feed`` under the secret it is served with (the daemon re-reads rotated
        secrets on its own; the state store is asked only for a feed not served yet), and
        record the render's success."""
        secret = self.feeds.secret_of(feed.feed_id) or self.secret(feed.feed_id)
        self.feeds.publish(feed, secret)
        metrics.LAST_RENDER_SUCCESS.labels(feed.feed_id).set(now.timestamp())

    def _save_and_publish(
        self,
        feed: FeedConfig,
        rendered: RenderedFeed,
        now: datetime,
        changed: bool,
        current: PublishedFeed | None,
    ) -> None:
        last_modified = now if changed or current is None else current.last_modified
        published = PublishedFeed.build(
            feed.id,
            feed.name or f"Canvas ({feed.id})",
            rendered.ics,
            refreshed_at=now,
            last_modified=last_modified,
            event_count=len(rendered.events),
            includes=tuple(feed.include),
        )
        self.state.save_feed(published, rendered.versions)
        if feed.id not in self.outputs.feed_ids:
            return  # dropped from the config (SIGHUP) while this cycle ran: not served again
        self._serve(published, now)
        metrics.FEED_EVENTS.labels(feed.id).set(len(rendered.events))
        metrics.FEED_BYTES.labels(feed.id).set(len(rendered.ics))
