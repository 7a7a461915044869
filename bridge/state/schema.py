"""The state store's tables (SQLAlchemy 2). Migrations in ``migrations/`` mirror them.

Portable types only, so PostgreSQL works by URL: times are stored as UTC and come back aware;
JSON is kept as text; feed bodies as binary.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class AccountSnapshotRow(Base):
    __tablename__ = "account_snapshots"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    snapshot_json: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AccountStatusRow(Base):
    __tablename__ = "account_status"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)


class FeedSecretRow(Base):
    __tablename__ = "feed_secrets"
    feed_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RenderedFeedRow(Base):
    __tablename__ = "rendered_feeds"
    feed_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    etag: Mapped[str] = mapped_column(String(80))
    last_modified: Mapped[datetime] = mapped_column(UTCDateTime)
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    event_count: Mapped[int] = mapped_column(Integer)
    includes: Mapped[str] = mapped_column(Text, default="")


class EventVersionRow(Base):
    __tablename__ = "event_versions"
    scope: Mapped[str] = mapped_column(String(80), primary_key=True)
    uid: Mapped[str] = mapped_column(String(255), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(Integer)
    dtstamp: Mapped[datetime] = mapped_column(UTCDateTime)
    last_modified: Mapped[datetime] = mapped_column(UTCDateTime)


class CalDAVItemRow(Base):
    __tablename__ = "caldav_items"
    target_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    uid: Mapped[str] = mapped_column(String(255), primary_key=True)
    href: Mapped[str] = mapped_column(Text)
    etag: Mapped[str | None] = mapped_column(Text, nullable=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    ics: Mapped[str] = mapped_column(Text)


class CalDAVTokenRow(Base):
    __tablename__ = "caldav_tokens"
    target_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[str | None] = mapped_column(Text, nullable=True)


class CalDAVCollectionRow(Base):
    """Where discovery found a target's calendar (``found_for``: the settings it answers)."""

    __tablename__ = "caldav_collections"
    target_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    found_for: Mapped[str] = mapped_column(String(64))
    syncs: Mapped[bool] = mapped_column(Boolean, default=True)


class HiddenEventRow(Base):
    __tablename__ = "hidden_events"
    target_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    uid: Mapped[str] = mapped_column(String(255), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))


class ReservationAliasRow(Base):
    """A re-booked reservation keeps the UID of the booking it replaced."""

    __tablename__ = "reservation_aliases"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reservation_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # Canvas id
    uid: Mapped[str] = mapped_column(String(255))


class JournalRow(Base):
    __tablename__ = "writeback_journal"
    __table_args__ = (UniqueConstraint("idempotency_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(128))
    account_id: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str] = mapped_column(String(64))
    uid: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16))
    params: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)
    outcome: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    new_reservation_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class SafetyStopRow(Base):
    """A calendar whose mass change waits for a person (one row per target at most)."""

    __tablename__ = "safety_stops"
    target_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # held | approved | discarded
    uids: Mapped[str] = mapped_column(Text)  # JSON list
    changed: Mapped[int] = mapped_column(Integer)
    owned: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # mass_change | empty_listing | canvas_empty
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class LeaseRow(Base):
    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


# --- institution mode: people who connected themselves (revision 0005) ----------------------
# The Canvas tokens and CalDAV passwords are Fernet tokens (bridge/state/vault.py), never clear.


class PersonRow(Base):
    __tablename__ = "people"
    # AUTOINCREMENT: an id is never given again, so a removed person's feed URL, stored feed or
    # calendar state can never come to belong to someone who connects later
    __table_args__ = (
        UniqueConstraint("canvas_host", "canvas_user_id"),
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    canvas_host: Mapped[str] = mapped_column(String(255))
    canvas_user_id: Mapped[int] = mapped_column(BigInteger)  # sharded Canvas ids pass 2**31
    name: Mapped[str] = mapped_column(Text)
    connection: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    access_token: Mapped[str] = mapped_column(Text)  # encrypted
    refresh_token: Mapped[str | None] = mapped_column(Text, nullable=True)  # encrypted
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PersonFeedRow(Base):
    __tablename__ = "person_feeds"
    __table_args__ = ({"sqlite_autoincrement": True},)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("people.id", ondelete="CASCADE"), index=True
    )
    secret: Mapped[str] = mapped_column(String(128))
    include: Mapped[str] = mapped_column(Text)
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    name: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PersonTargetRow(Base):
    __tablename__ = "person_targets"
    __table_args__ = ({"sqlite_autoincrement": True},)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("people.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(Text)
    username: Mapped[str] = mapped_column(Text)
    password: Mapped[str] = mapped_column(Text)  # encrypted
    calendar: Mapped[str] = mapped_column(Text)
    include: Mapped[str] = mapped_column(Text)
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    writeback: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PeopleVersionRow(Base):
    """One row: a counter moved in the same transaction as any change to the people, their
    feeds or calendars that the daemon's merge reads (revision 0010). A merge that finds the
    number it saw last reads nothing else."""

    __tablename__ = "people_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    version: Mapped[int] = mapped_column(BigInteger)


# --- cluster mode: replicas on one PostgreSQL (revision 0006) -------------------------------


class ClusterScheduleRow(Base):
    """When an account is next due, and its last sync: when, by which replica, how it ended."""

    __tablename__ = "cluster_schedule"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_sync_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    last_outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)


class ClusterReplicaRow(Base):
    """A replica that runs (or ran) the job worker: its feed listener and engine worker id."""

    __tablename__ = "cluster_replicas"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    listen: Mapped[str] = mapped_column(Text)
    worker_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


# --- who each token belongs to, shared by the replicas (revision 0009) ----------------------


class AccountProfileRow(Base):
    """An account's ``/users/self`` as JSON, under a keyed digest of its Canvas and credential
    (never the token itself), and when Canvas was asked."""

    __tablename__ = "account_profiles"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    profile_json: Mapped[str] = mapped_column(Text)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StateKeyRow(Base):
    """A random key made by the store itself (hex), e.g. for the profiles' digests when no
    encryption key is configured."""

    __tablename__ = "state_keys"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128))
