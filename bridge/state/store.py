"""The state store facade: what calbridge saw, rendered and wrote, in short transactions.

Synchronous (the daemon calls it through ``asyncio.to_thread``). Every method is one
transaction, so a crash at any point leaves either the old or the new state, never a mix.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, bindparam, delete, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bridge.model.event import EventVersion
from bridge.model.feed import PublishedFeed
from bridge.state.caldav_repo import SqlStatusStore
from bridge.state.cluster import ClusterStore
from bridge.state.db import (
    READ_ONLY,
    insert_or_keep,
    make_engine,
    serialize,
    upgrade,
    upsert,
    upsert_if_differs,
    upsert_many,
)
from bridge.state.journal import Journal
from bridge.state.listen import notify_feed
from bridge.state.people import PeopleStore
from bridge.state.profiles import ProfileStore
from bridge.state.schema import (
    AccountSnapshotRow,
    AccountStatusRow,
    EventVersionRow,
    FeedSecretRow,
    LeaseRow,
    RenderedFeedRow,
)
from bridge.state.stops import StopStore
from bridge.state.vault import NoVault, Vault


def _upsert_success(conn: Connection, account_id: str, at: datetime) -> None:
    """The account's status after a successful poll: one INSERT that updates the row if there
    is one, atomic on both backends."""
    upsert(
        conn,
        AccountStatusRow,
        ["account_id"],
        account_id=account_id,
        last_success_at=at,
        consecutive_failures=0,
    )


@dataclass(frozen=True)
class AccountStatus:
    account_id: str
    last_success_at: datetime | None
    last_error_at: datetime | None
    last_error: str | None
    consecutive_failures: int


# Built once (building a statement costs more CPU than SQLite takes to run it)
_INSERT_VERSION = insert(EventVersionRow)  # the rows are the parameters
_DELETE_VERSIONS = delete(EventVersionRow).where(EventVersionRow.scope == bindparam("scope"))
_SECRET = select(FeedSecretRow.secret).where(FeedSecretRow.feed_id == bindparam("feed_id"))
_VERSIONS = select(
    EventVersionRow.uid,
    EventVersionRow.content_hash,
    EventVersionRow.sequence,
    EventVersionRow.dtstamp,
    EventVersionRow.last_modified,
).where(EventVersionRow.scope == bindparam("scope"))


def _now() -> datetime:
    return datetime.now(UTC)


class StateStore:
    def __init__(self, url: str, vault: Vault | NoVault | None = None) -> None:
        """``vault`` opens the tokens and passwords of connected people; without one they
        cannot be read or stored (everything else works)."""
        self.url = url
        self.engine = make_engine(url)
        upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.caldav = SqlStatusStore(self._sessions)
        self.journal = Journal(self._sessions)
        self.stops = StopStore(self._sessions)
        self.cluster = ClusterStore(self.session)
        vault = vault or NoVault("state.encryption_key_file, _credential or _env (none set)")
        self.people = PeopleStore(self._sessions, vault)
        self.profiles = ProfileStore(self.session, self.reading, vault)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A transaction that only reads: it takes no write lock (see ``db.READ_ONLY``)."""
        with self._sessions.begin() as session:
            session.connection(execution_options={READ_ONLY: True})
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # --- PostgreSQL advisory locks (one per account: see bridge.state.cluster) ------------------

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def try_advisory_lock(self, key: int) -> Connection | None:
        """PostgreSQL: a connection holding the session-level advisory lock ``key`` (give it to
        :meth:`release_advisory_lock`), or None while another session holds it. A process that
        dies loses its locks with its connections."""
        conn = self.engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        if got:
            return conn
        conn.close()
        return None

    def release_advisory_lock(self, conn: Connection, key: int) -> None:
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
        except BaseException:
            conn.invalidate()  # never back to the pool while it may still hold the lock
            raise
        finally:
            conn.close()

    # --- snapshots and account status --------------------------------------------------------

    def save_snapshot(self, account_id: str, snapshot_json: str, fetched_at: datetime) -> bool:
        """Keep the last *good* snapshot (callers save only successful polls). True if it changed."""
        digest = hashlib.sha256(snapshot_json.encode()).hexdigest()
        with self.session() as s:
            serialize(s, f"account:{account_id}")
            row = s.get(AccountSnapshotRow, account_id)
            if row is None:
                s.add(
                    AccountSnapshotRow(
                        account_id=account_id,
                        snapshot_json=snapshot_json,
                        content_hash=digest,
                        fetched_at=fetched_at,
                    )
                )
                return True
            changed = row.content_hash != digest
            row.snapshot_json, row.content_hash, row.fetched_at = snapshot_json, digest, fetched_at
            return changed

    def save_poll(
        self, account_id: str, snapshot_json: str, content_hash: str, at: datetime
    ) -> bool:
        """A successful poll in one transaction: the account's status, and the snapshot only
        when ``content_hash`` (of what Canvas said, not of when) differs from the stored one.
        True if the snapshot was written. Two Core statements, no ORM session: a cold cycle
        runs this for every account."""
        with self.engine.begin() as conn:
            serialize(conn, f"account:{account_id}")
            _upsert_success(conn, account_id, at)
            return upsert_if_differs(
                conn,
                AccountSnapshotRow,
                ["account_id"],
                "content_hash",
                account_id=account_id,
                snapshot_json=snapshot_json,
                content_hash=content_hash,
                fetched_at=at,
            )

    def load_snapshot(self, account_id: str) -> str | None:
        with self.reading() as s:
            row = s.get(AccountSnapshotRow, account_id)
            return row.snapshot_json if row else None

    def _status_row(self, s: Session, account_id: str) -> AccountStatusRow:
        row = s.get(AccountStatusRow, account_id)
        if row is None:
            row = AccountStatusRow(account_id=account_id, consecutive_failures=0)
            s.add(row)
        return row

    def record_poll_success(self, account_id: str, at: datetime) -> None:
        """One statement without an ORM session (every account runs this every cycle, changed
        or not): an INSERT that updates the row if there is one, atomic on both backends."""
        with self.engine.begin() as conn:
            _upsert_success(conn, account_id, at)

    def record_poll_successes(self, polled: Mapping[str, datetime]) -> None:
        """:meth:`record_poll_success` for several accounts in one transaction (one
        statement, one row each): the status writes of a cycle's unchanged accounts."""
        if not polled:
            return
        rows = [
            {"account_id": account_id, "last_success_at": at, "consecutive_failures": 0}
            for account_id, at in polled.items()
        ]
        with self.engine.begin() as conn:
            upsert_many(conn, AccountStatusRow, ["account_id"], rows)

    def record_poll_failure(self, account_id: str, at: datetime, error: str) -> int:
        with self.session() as s:
            serialize(s, f"account:{account_id}")
            row = self._status_row(s, account_id)
            row.last_error_at, row.last_error = at, error[:2000]
            row.consecutive_failures = (row.consecutive_failures or 0) + 1
            return row.consecutive_failures

    def account_statuses(self) -> dict[str, AccountStatus]:
        with self.reading() as s:
            return {
                r.account_id: AccountStatus(
                    r.account_id,
                    r.last_success_at,
                    r.last_error_at,
                    r.last_error,
                    r.consecutive_failures,
                )
                for r in s.scalars(select(AccountStatusRow))
            }

    # --- feed secrets and rendered feeds -----------------------------------------------------

    def feed_secret(self, feed_id: str) -> str:
        """The feed's secret, created (192 random bits) on first use (once, whichever of
        several processes asks first). Reading it takes no write lock."""
        with self.engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                found = conn.scalar(_SECRET, {"feed_id": feed_id})
        if found is not None:
            return found  # the usual case
        with self.engine.begin() as conn:
            serialize(conn, f"feed-secret:{feed_id}")
            # another process may have created it meanwhile: then its secret stays
            insert_or_keep(
                conn,
                FeedSecretRow,
                ["feed_id"],
                feed_id=feed_id,
                secret=secrets.token_urlsafe(24),
                created_at=_now(),
            )
            return conn.execute(_SECRET, {"feed_id": feed_id}).scalar_one()

    def rotate_feed_secret(self, feed_id: str) -> str:
        with self.session() as s:
            serialize(s, f"feed-secret:{feed_id}")
            row = s.get(FeedSecretRow, feed_id)
            secret = secrets.token_urlsafe(24)
            if row is None:
                s.add(FeedSecretRow(feed_id=feed_id, secret=secret, created_at=_now()))
            else:
                row.secret, row.created_at = secret, _now()
            notify_feed(s, feed_id)
            return secret

    def save_feed(self, feed: PublishedFeed, scope_versions: Mapping[str, EventVersion]) -> None:
        """The rendered feed and its event versions, together: one cannot exist without the
        other. Core statements (an upsert, a delete, one insert of every version), no ORM
        session: a cold cycle runs this for every feed."""
        scope = f"feed:{feed.feed_id}"
        with self.engine.begin() as conn:
            serialize(conn, scope, f"versions:{scope}")
            upsert(
                conn,
                RenderedFeedRow,
                ["feed_id"],
                feed_id=feed.feed_id,
                name=feed.name,
                body=feed.body,
                etag=feed.etag,
                last_modified=feed.last_modified,
                refreshed_at=feed.refreshed_at,
                event_count=feed.event_count,
                includes=",".join(feed.includes),
            )
            self._replace_versions(conn, scope, scope_versions)
            notify_feed(conn, feed.feed_id)  # other replicas serve it too (bridge.state.listen)

    def load_feeds(self, feed_ids: Collection[str] | None = None) -> list[PublishedFeed]:
        """The feeds saved by :meth:`save_feed` (all, or those of ``feed_ids``), ready to serve
        again."""
        with self.reading() as s:
            query = select(RenderedFeedRow)
            if feed_ids is not None:
                query = query.where(RenderedFeedRow.feed_id.in_(sorted(feed_ids)))
            rows = list(s.scalars(query))
        return [
            PublishedFeed.build(
                r.feed_id,
                r.name,
                r.body,
                refreshed_at=r.refreshed_at,
                last_modified=r.last_modified,
                event_count=r.event_count,
                includes=tuple(i for i in r.includes.split(",") if i),
            )
            for r in rows
        ]

    # --- event versions ----------------------------------------------------------------------

    def load_versions(self, scope: str) -> dict[str, EventVersion]:
        with self.engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                rows = conn.execute(_VERSIONS, {"scope": scope}).all()
        return {row[0]: EventVersion(*row) for row in rows}

    def save_versions(self, scope: str, versions: Mapping[str, EventVersion]) -> None:
        with self.engine.begin() as conn:
            serialize(conn, f"versions:{scope}")
            self._replace_versions(conn, scope, versions)

    @staticmethod
    def _replace_versions(
        conn: Connection, scope: str, versions: Mapping[str, EventVersion]
    ) -> None:
        conn.execute(_DELETE_VERSIONS, {"scope": scope})
        if versions:
            conn.execute(
                _INSERT_VERSION,
                [
                    {
                        "scope": scope,
                        "uid": v.uid,
                        "content_hash": v.content_hash,
                        "sequence": v.sequence,
                        "dtstamp": v.dtstamp,
                        "last_modified": v.last_modified,
                    }
                    for v in versions.values()
                ],
            )

    # --- leases ------------------------------------------------------------------------------

    def acquire_lease(
        self,
        name: str,
        holder: str,
        ttl: timedelta,
        holder_alive: Callable[[str], bool] = lambda _holder: True,
    ) -> bool:
        """Take (or renew) ``name`` for ``holder`` unless another holder has it unexpired *and*
        is still alive (``holder_alive``, e.g. a PID check on the same host). Atomic."""
        now = _now()
        try:
            with self.session() as s:
                serialize(s, f"lease:{name}")
                row = s.get(LeaseRow, name, with_for_update=True)
                if row is None:
                    s.add(LeaseRow(name=name, holder=holder, expires_at=now + ttl))
                    return True
                if row.holder != holder and row.expires_at > now and holder_alive(row.holder):
                    return False
                row.holder, row.expires_at = holder, now + ttl
                return True
        except IntegrityError:  # another process inserted it first
            return False

    def release_lease(self, name: str, holder: str) -> None:
        with self.session() as s:
            s.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder))


def open_state(url: str, vault: Vault | NoVault | None = None) -> StateStore:
    """Open (creating or upgrading) the state database at ``url``."""
    return StateStore(url, vault)
