"""One sync cycle of one account: poll → save → render → publish → push → write back.

The safety rules live here, in order:
* a failed poll changes nothing but the account's status: the last good snapshot, feeds and
  calendars stay as they are (Canvas down never empties a calendar);
* a rendered feed and its event versions are saved in one transaction, then published;
* CalDAV targets are pushed only from a successful poll.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge import metrics
from bridge.caldav.planner import DesiredItem
from bridge.caldav.push import Pusher
from bridge.caldav.target import settings_for
from bridge.calendar import (
    FeedOptions,
    RenderCache,
    RenderedFeed,
    collect_events,
    next_versions,
    render_event_ics,
    render_feed,
)
from bridge.canvas.client import CanvasClient
from bridge.canvas.models import AccountSnapshot
from bridge.canvas.poller import poll_account
from bridge.canvas.transport import ResponseInfo, limits_for
from bridge.config import AccountConfig, CalDAVConfig, FeedConfig, Settings
from bridge.daemon.logs import register_secret
from bridge.errors import BridgeError
from bridge.state import StateStore, StoredFeed
from bridge.web.store import FeedStore, PublishedFeed
from bridge.writeback.engine import RateLimit, WritebackContext, WritebackEngine

log = logging.getLogger("bridge.daemon")


@dataclass
class FeedResult:
    feed_id: str
    events: int
    changed: bool
    skipped: int


@dataclass
class AccountResult:
    account_id: str
    ok: bool
    error: str | None = None
    requests: int = 0
    seconds: float = 0.0
    feeds: list[FeedResult] = field(default_factory=list)
    pushes: list[Any] = field(default_factory=list)
    push_errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account_id,
            "ok": self.ok,
            "error": self.error,
            "canvas_requests": self.requests,
            "seconds": round(self.seconds, 3),
            "feeds": [vars(f) for f in self.feeds],
            "pushes": self.pushes,
            "push_errors": self.push_errors,
        }


def feed_options(feed: FeedConfig, aliases: dict[int, str] | None = None) -> FeedOptions:
    return FeedOptions(
        name=feed.name or f"Canvas ({feed.id})",
        description=feed.description,
        include=frozenset(feed.include),
        timezone=feed.timezone,
        window_past=feed.window_past,
        window_future=feed.window_future,
        color=feed.color,
        default_alarm=feed.default_alarm,
        refresh_interval=feed.refresh_interval,
        reservation_uids=aliases or {},
    )


def _count_response(info: ResponseInfo) -> None:
    metrics.CANVAS_REQUESTS.labels(str(info.status)).inc()
    if info.throttled:
        metrics.CANVAS_THROTTLED.inc()


class Syncer:
    """Runs cycles for the accounts of one config against one state store and feed store."""

    def __init__(
        self,
        settings: Settings,
        state: StateStore,
        feeds: FeedStore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.feeds = feeds
        self.clock = clock
        self.client_options = client_options or {}
        self._caches: dict[str, RenderCache] = {}
        self._pushers: dict[str, Pusher] = {}
        self._writeback_limit = RateLimit(settings.writeback.max_per_minute)

    # --- start-up ---------------------------------------------------------------------------

    def publish_stored(self) -> int:
        """Serve the feeds saved by the previous run at once, before the first poll."""
        wanted = {f.id for f in self.settings.feeds}
        count = 0
        for stored in self.state.load_feeds():
            if stored.feed_id not in wanted:
                continue
            self.feeds.publish(self._published(stored), self.secret(stored.feed_id))
            count += 1
        return count

    def secret(self, feed_id: str) -> str:
        secret = self.state.feed_secret(feed_id)
        register_secret(secret)
        return secret

    @staticmethod
    def _published(stored: StoredFeed) -> PublishedFeed:
        return PublishedFeed.build(
            stored.feed_id,
            stored.name,
            stored.body,
            refreshed_at=stored.refreshed_at,
            last_modified=stored.last_modified,
            event_count=stored.event_count,
            includes=stored.includes,
        )

    # --- the cycle --------------------------------------------------------------------------

    def client_for(self, account: AccountConfig) -> CanvasClient:
        token = account.token()
        register_secret(token)
        return CanvasClient(
            account.canvas_url,
            token,
            on_response=_count_response,
            limits=limits_for(account),
            **self.client_options,
        )

    async def poll(self, account: AccountConfig) -> tuple[AccountSnapshot, int]:
        async with self.client_for(account) as client:
            try:
                snapshot = await poll_account(
                    client,
                    account.canvas_host,
                    conference_contexts=tuple(account.conference_contexts),
                    include_managed=account.include_managed,
                )
            finally:
                requests = client.requests_made
        return snapshot, requests

    async def sync_account(self, account: AccountConfig, *, dry_run: bool = False) -> AccountResult:
        started = time.monotonic()
        result = AccountResult(account.id, ok=False)
        try:
            snapshot, result.requests = await self.poll(account)
        except BridgeError as exc:
            result.error = str(exc)
            result.seconds = time.monotonic() - started
            metrics.POLLS.labels(account.id, "failed").inc()
            if not dry_run:
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
        now = self.clock()
        metrics.POLLS.labels(account.id, "ok").inc()
        metrics.POLL_SECONDS.labels(account.id).observe(time.monotonic() - started)
        if not dry_run:
            await asyncio.to_thread(
                self.state.save_snapshot, account.id, snapshot.model_dump_json(), now
            )
            await asyncio.to_thread(self.state.record_poll_success, account.id, now)
            metrics.LAST_POLL_SUCCESS.labels(account.id).set(now.timestamp())
        result.ok = True
        for feed in [f for f in self.settings.feeds if f.account == account.id]:
            result.feeds.append(
                await asyncio.to_thread(self.render_and_publish, feed, snapshot, now, dry_run)
            )
        for target in [t for t in self.settings.caldav if t.account == account.id]:
            await self.push_target(account, target, snapshot, now, dry_run, result)
        result.seconds = time.monotonic() - started
        log.info(
            "account %s: polled in %.2fs with %d Canvas requests; %s",
            account.id,
            result.seconds,
            result.requests,
            ", ".join(
                f"feed {f.feed_id}: {f.events} events{' (changed)' if f.changed else ''}"
                for f in result.feeds
            )
            or "no feeds",
        )
        return result

    async def push_target(
        self,
        account: AccountConfig,
        target: CalDAVConfig,
        snapshot: AccountSnapshot,
        now: datetime,
        dry_run: bool,
        result: AccountResult,
    ) -> None:
        """Write the target's events; errors are recorded, never raised (other targets go on)."""
        scope = f"caldav:{target.id}"
        try:
            pusher = self._pushers.get(target.id)
            if pusher is None:
                settings = settings_for(target)
                register_secret(settings.password)
                pusher = self._pushers[target.id] = Pusher(settings)
            previous = await asyncio.to_thread(self.state.load_versions, scope)
            aliases = await asyncio.to_thread(self.state.journal.aliases, target.account)
            options = FeedOptions(
                include=frozenset(target.include),
                timezone=target.timezone,
                reservation_uids=aliases,
            )
            collected = collect_events(snapshot, options, now)
            versions = next_versions(collected.events, previous, now)
            desired = {
                e.uid: DesiredItem(
                    e.uid, render_event_ics(e, versions[e.uid], options, now), e.content_hash()
                )
                for e in collected.events
            }
            hidden = await asyncio.to_thread(self.state.caldav.hidden, target.id)
            events = {e.uid: e for e in collected.events}
            ctx = WritebackContext(
                account.id,
                target.id,
                snapshot.canvas_host,
                snapshot,
                events,
                now,
                target.writeback,
                dry_run,
                hidden,
            )
            engine = WritebackEngine(
                self.state, lambda: self.client_for(account), ctx, self._writeback_limit
            )
            report = await pusher.push(
                desired, self.state.caldav, now=now, hidden=hidden, dry_run=dry_run, resolver=engine
            )
            if not dry_run:
                await asyncio.to_thread(self.state.save_versions, scope, versions)
            result.pushes.append({**report.as_dict(), "writebacks": ctx.planned})
            if report.errors:
                result.push_errors += [f"{target.id}: {e}" for e in report.errors]
            elif not dry_run:
                metrics.LAST_PUSH_SUCCESS.labels(target.id).set(now.timestamp())
            log.info(
                "caldav %s: %d created, %d updated, %d deleted, %d unchanged, %d requests%s",
                target.id,
                report.created,
                report.updated,
                report.deleted,
                report.unchanged,
                report.requests,
                f"; {len(report.conflicts)} conflicts" if report.conflicts else "",
            )
        except BridgeError as exc:
            result.push_errors.append(f"{target.id}: {exc}")
            log.warning("caldav %s: push failed, calendar left as it was: %s", target.id, exc)

    def render_and_publish(
        self, feed: FeedConfig, snapshot: AccountSnapshot, now: datetime, dry_run: bool
    ) -> FeedResult:
        scope = f"feed:{feed.id}"
        previous = self.state.load_versions(scope)
        options = feed_options(feed, self.state.journal.aliases(feed.account))
        rendered = render_feed(
            snapshot, options, previous, now, self._caches.setdefault(feed.id, RenderCache())
        )
        for skipped in rendered.skipped:
            level = (
                logging.INFO
                if "window" in skipped.reason or "no scheduled" in skipped.reason
                else logging.WARNING
            )
            log.log(level, "feed %s: left out %s: %s", feed.id, skipped.ref, skipped.reason)
        current = self.feeds.get(feed.id)
        changed = current is None or current.body != rendered.ics
        metrics.RENDERS.labels(feed.id, str(changed).lower()).inc()
        if dry_run:
            return FeedResult(feed.id, len(rendered.events), changed, len(rendered.skipped))
        self._save_and_publish(feed, rendered, now, changed, current)
        return FeedResult(feed.id, len(rendered.events), changed, len(rendered.skipped))

    def _save_and_publish(
        self,
        feed: FeedConfig,
        rendered: RenderedFeed,
        now: datetime,
        changed: bool,
        current: PublishedFeed | None,
    ) -> None:
        last_modified = now if changed or current is None else current.last_modified
        stored = StoredFeed(
            feed.id,
            feed.name or f"Canvas ({feed.id})",
            rendered.ics,
            "",
            last_modified,
            now,
            len(rendered.events),
            tuple(feed.include),
        )
        published = self._published(stored)
        stored = StoredFeed(**{**vars(stored), "etag": published.etag})
        self.state.save_feed(stored, rendered.versions)
        self.feeds.publish(published, self.secret(feed.id))
        metrics.LAST_RENDER_SUCCESS.labels(feed.id).set(now.timestamp())
        metrics.FEED_EVENTS.labels(feed.id).set(len(rendered.events))
        metrics.FEED_BYTES.labels(feed.id).set(len(rendered.ics))
