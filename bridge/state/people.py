"""The people who connected themselves (institution mode): accounts, feeds, CalDAV calendars.

One transaction per method, like the rest of the store. Tokens and CalDAV passwords pass
through the :class:`~bridge.state.vault.Vault` on their way in and out, so the database holds
them only encrypted; the records handed out (:mod:`bridge.model.people`) carry none of them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bridge.model.people import (
    Connection,
    NewTarget,
    Person,
    PersonFeed,
    PersonTarget,
    account_key,
)
from bridge.model.tokens import TokenSet
from bridge.state.db import serialize
from bridge.state.listen import notify_feed
from bridge.state.schema import (
    AccountSnapshotRow,
    AccountStatusRow,
    CalDAVCollectionRow,
    CalDAVItemRow,
    CalDAVTokenRow,
    EventVersionRow,
    HiddenEventRow,
    PeopleVersionRow,
    PersonFeedRow,
    PersonRow,
    PersonTargetRow,
    RenderedFeedRow,
)
from bridge.state.vault import NoVault, Vault


class UnknownPerson(LookupError):
    """No connected person (or feed, or calendar of theirs) has this id."""


def _now() -> datetime:
    return datetime.now(UTC)


def _split(value: str) -> tuple[str, ...]:
    return tuple(part for part in value.split(",") if part)


def _feed(row: PersonFeedRow) -> PersonFeed:
    return PersonFeed(
        row.id,
        row.person_id,
        row.secret,
        _split(row.include),
        row.timezone,
        row.name,
        row.created_at,
    )


def _target(row: PersonTargetRow) -> PersonTarget:
    return PersonTarget(
        row.id,
        row.person_id,
        row.url,
        row.username,
        row.calendar,
        _split(row.include),
        row.timezone,
        row.writeback,
        row.created_at,
    )


def _changed(s: Session) -> None:
    """Move the people's version, in the transaction of the change (the last statement of a
    change: on PostgreSQL its row lock is then taken after every other, and held briefly).
    Every change the daemon's merge reads (a person's state, feeds, calendars, a feed secret)
    calls this; a token refreshed, a sync recorded or keys rotated do not."""
    s.execute(
        update(PeopleVersionRow)
        .where(PeopleVersionRow.id == 1)
        .values(version=PeopleVersionRow.version + 1)
    )


class PeopleStore:
    """Connected people in the state database; ``vault`` opens and seals their secrets."""

    def __init__(self, sessions: sessionmaker[Session], vault: Vault | NoVault) -> None:
        self._sessions = sessions
        self.vault = vault

    # --- reading -----------------------------------------------------------------------------

    def _person(self, s: Session, row: PersonRow) -> Person:
        feeds = s.scalars(
            select(PersonFeedRow)
            .where(PersonFeedRow.person_id == row.id)
            .order_by(PersonFeedRow.id)
        )
        targets = s.scalars(
            select(PersonTargetRow)
            .where(PersonTargetRow.person_id == row.id)
            .order_by(PersonTargetRow.id)
        )
        return self._record(row, tuple(_feed(f) for f in feeds), tuple(_target(t) for t in targets))

    @staticmethod
    def _record(
        row: PersonRow, feeds: tuple[PersonFeed, ...], targets: tuple[PersonTarget, ...]
    ) -> Person:
        return Person(
            id=row.id,
            canvas_host=row.canvas_host,
            canvas_user_id=row.canvas_user_id,
            name=row.name,
            connection=Connection(row.connection),
            created_at=row.created_at,
            last_sync_at=row.last_sync_at,
            token_expires_at=row.token_expires_at,
            feeds=feeds,
            targets=targets,
        )

    @staticmethod
    def _row(s: Session, person_id: int, *, lock: bool = False) -> PersonRow:
        """The person's row; ``lock``: held until the transaction ends (a change to it)."""
        row = s.get(PersonRow, person_id, with_for_update=lock)
        if row is None:
            raise UnknownPerson(f"no connected person has id {person_id}")
        return row

    def get(self, person_id: int) -> Person:
        with self._sessions.begin() as s:
            return self._person(s, self._row(s, person_id))

    def find(self, canvas_host: str, canvas_user_id: int) -> Person | None:
        with self._sessions.begin() as s:
            row = s.scalars(
                select(PersonRow).where(
                    PersonRow.canvas_host == canvas_host,
                    PersonRow.canvas_user_id == canvas_user_id,
                )
            ).first()
            return self._person(s, row) if row else None

    def all(self, connection: Connection | None = None) -> list[Person]:
        """Every person (or those in ``connection``), with their feeds and calendars: three
        queries whatever the number of people (the daemon asks every few seconds)."""
        with self._sessions.begin() as s:
            query = select(PersonRow).order_by(PersonRow.id)
            if connection is not None:
                query = query.where(PersonRow.connection == connection)
            rows = list(s.scalars(query))
            chosen = select(PersonRow.id)
            if connection is not None:
                chosen = chosen.where(PersonRow.connection == connection)
            feeds: dict[int, list[PersonFeed]] = {}
            for f in s.scalars(
                select(PersonFeedRow)
                .where(PersonFeedRow.person_id.in_(chosen))
                .order_by(PersonFeedRow.id)
            ):
                feeds.setdefault(f.person_id, []).append(_feed(f))
            targets: dict[int, list[PersonTarget]] = {}
            for t in s.scalars(
                select(PersonTargetRow)
                .where(PersonTargetRow.person_id.in_(chosen))
                .order_by(PersonTargetRow.id)
            ):
                targets.setdefault(t.person_id, []).append(_target(t))
            return [
                self._record(row, tuple(feeds.get(row.id, ())), tuple(targets.get(row.id, ())))
                for row in rows
            ]

    def version(self) -> int | None:
        """The people's version: it moves with every change to what :meth:`all` returns but
        sync times and token expiry (one row read; None if the row is missing)."""
        with self._sessions.begin() as s:
            return s.scalar(select(PeopleVersionRow.version).where(PeopleVersionRow.id == 1))

    def counts(self) -> dict[Connection, int]:
        """How many people are in each state (every state present, 0 when none)."""
        with self._sessions.begin() as s:
            rows = s.execute(
                select(PersonRow.connection, func.count(PersonRow.id)).group_by(
                    PersonRow.connection
                )
            )
            found = {Connection(state): int(n) for state, n in rows}
        return {state: found.get(state, 0) for state in Connection}

    def tokens(self, person_id: int) -> TokenSet:
        """The person's Canvas tokens, decrypted."""
        with self._sessions.begin() as s:
            row = self._row(s, person_id)
            what = f"the Canvas token of person {person_id}"
            return TokenSet(
                access_token=self.vault.decrypt(row.access_token, what),
                refresh_token=(
                    self.vault.decrypt(row.refresh_token, what) if row.refresh_token else None
                ),
                expires_at=row.token_expires_at,
                user_id=row.canvas_user_id,
                user_name=row.name,
            )

    def target_password(self, target_id: int) -> str:
        with self._sessions.begin() as s:
            row = s.get(PersonTargetRow, target_id)
            if row is None:
                raise UnknownPerson(
                    f"no connected person has a CalDAV calendar with id {target_id}"
                )
            return self.vault.decrypt(
                row.password, f"the CalDAV password of {account_key(row.person_id)}.c{row.id}"
            )

    def feed_by_key(self, feed_key: str) -> PersonFeed | None:
        """The feed whose public id is ``feed_key`` (``u7.f12``), if it exists."""
        person, _, feed = feed_key.partition(".f")
        if not person.startswith("u") or not person[1:].isdigit() or not feed.isdigit():
            return None
        with self._sessions.begin() as s:
            row = s.get(PersonFeedRow, int(feed))
            if row is None or row.person_id != int(person[1:]):
                return None
            return _feed(row)

    # --- connecting, and what happens to tokens afterwards ------------------------------------

    def connect(
        self,
        canvas_host: str,
        tokens: TokenSet,
        *,
        default_include: Sequence[str],
        now: datetime | None = None,
    ) -> tuple[Person, bool]:
        """The person ``tokens`` belong to, created (with one feed of ``default_include``) or
        found by Canvas host and user id; their tokens stored, their state ``connected``.
        Returns the person and whether they are new. Connecting again after "reconnect
        needed" (or a removal by someone else in between) works the same way."""
        now = now or _now()
        sealed_access = self.vault.encrypt(tokens.access_token)
        sealed_refresh = self.vault.encrypt(tokens.refresh_token) if tokens.refresh_token else None
        for _attempt in range(2):
            try:
                with self._sessions.begin() as s:
                    serialize(s, f"person:{canvas_host}:{tokens.user_id}")
                    row = s.scalars(
                        select(PersonRow)
                        .where(
                            PersonRow.canvas_host == canvas_host,
                            PersonRow.canvas_user_id == tokens.user_id,
                        )
                        .with_for_update()
                    ).first()
                    created = row is None
                    if row is None:
                        row = PersonRow(
                            canvas_host=canvas_host,
                            canvas_user_id=tokens.user_id,
                            created_at=now,
                        )
                        s.add(row)
                    row.name = tokens.user_name or row.name or f"Canvas user {tokens.user_id}"
                    row.connection = Connection.CONNECTED
                    row.access_token, row.refresh_token = sealed_access, sealed_refresh
                    row.token_expires_at = tokens.expires_at
                    s.flush()
                    if created:
                        s.add(self._new_feed(row.id, default_include, None, None, now))
                        s.flush()
                    person = self._person(s, row)
                    _changed(s)
                    return person, created
            except IntegrityError:  # the same person connected twice at once: find theirs
                continue
        raise RuntimeError("could not store the connection")  # pragma: no cover

    def store_tokens(self, person_id: int, tokens: TokenSet) -> None:
        """A refreshed token set (RefreshingAuth's ``on_refresh``), encrypted."""
        with self._sessions.begin() as s:
            row = self._row(s, person_id, lock=True)
            row.access_token = self.vault.encrypt(tokens.access_token)
            if tokens.refresh_token:
                row.refresh_token = self.vault.encrypt(tokens.refresh_token)
            row.token_expires_at = tokens.expires_at

    def set_connection(self, person_id: int, connection: Connection) -> Person:
        with self._sessions.begin() as s:
            row = self._row(s, person_id, lock=True)
            row.connection = connection
            person = self._person(s, row)
            _changed(s)
            return person

    def mark_reconnect_needed(self, person_id: int) -> None:
        """Canvas refused the refresh token: stop syncing until the person connects again. A
        disabled person stays disabled (the administrator's choice wins)."""
        with self._sessions.begin() as s:
            row = self._row(s, person_id, lock=True)
            if row.connection == Connection.CONNECTED:
                row.connection = Connection.RECONNECT_NEEDED
                _changed(s)

    def record_sync(self, person_id: int, at: datetime) -> bool:
        """The person's last successful poll; False (nothing recorded) unless connected."""
        with self._sessions.begin() as s:
            row = s.get(PersonRow, person_id, with_for_update=True)
            if row is None or row.connection != Connection.CONNECTED:
                return False
            row.last_sync_at = at
            return True

    def remove(self, person_id: int) -> Person:
        """Delete the person, their tokens, feeds and calendars, and what calbridge kept for
        them (snapshot, rendered feeds, calendar sync status). Returns what was removed."""
        with self._sessions.begin() as s:
            row = self._row(s, person_id, lock=True)
            person = self._person(s, row)
            self._forget_feeds(s, [f.feed_id for f in person.feeds])
            self._forget_targets(s, [t.target_id for t in person.targets])
            for table in (AccountSnapshotRow, AccountStatusRow):
                s.execute(delete(table).where(table.account_id == person.account_id))
            s.execute(delete(PersonFeedRow).where(PersonFeedRow.person_id == person_id))
            s.execute(delete(PersonTargetRow).where(PersonTargetRow.person_id == person_id))
            s.delete(row)
            s.flush()
            _changed(s)
            return person

    @staticmethod
    def _forget_feeds(s: Session, feed_ids: Iterable[str]) -> None:
        for feed_id in feed_ids:
            s.execute(delete(RenderedFeedRow).where(RenderedFeedRow.feed_id == feed_id))
            s.execute(delete(EventVersionRow).where(EventVersionRow.scope == f"feed:{feed_id}"))

    @staticmethod
    def _forget_targets(s: Session, target_ids: Iterable[str]) -> None:
        for target_id in target_ids:
            for table in (CalDAVItemRow, CalDAVTokenRow, HiddenEventRow, CalDAVCollectionRow):
                s.execute(delete(table).where(table.target_id == target_id))

    # --- feeds -------------------------------------------------------------------------------

    @staticmethod
    def _new_feed(
        person_id: int,
        include: Sequence[str],
        timezone: str | None,
        name: str | None,
        now: datetime,
    ) -> PersonFeedRow:
        return PersonFeedRow(
            person_id=person_id,
            secret=secrets.token_urlsafe(24),  # 192 random bits, like the config feeds'
            include=",".join(include),
            timezone=timezone,
            name=name,
            created_at=now,
        )

    def add_feed(
        self,
        person_id: int,
        include: Sequence[str],
        timezone: str | None = None,
        name: str | None = None,
    ) -> PersonFeed:
        with self._sessions.begin() as s:
            self._row(s, person_id)
            row = self._new_feed(person_id, include, timezone, name, _now())
            s.add(row)
            s.flush()
            _changed(s)
            return _feed(row)

    def _feed_row(
        self, s: Session, person_id: int, feed_id: int, *, lock: bool = False
    ) -> PersonFeedRow:
        row = s.get(PersonFeedRow, feed_id, with_for_update=lock)
        if row is None or row.person_id != person_id:  # never another person's feed
            raise UnknownPerson(f"{account_key(person_id)} has no feed with id {feed_id}")
        return row

    def update_feed(
        self, person_id: int, feed_id: int, include: Sequence[str], timezone: str | None
    ) -> PersonFeed:
        with self._sessions.begin() as s:
            row = self._feed_row(s, person_id, feed_id)
            row.include, row.timezone = ",".join(include), timezone
            s.flush()
            _changed(s)
            return _feed(row)

    def rotate_feed_secret(self, person_id: int, feed_id: int) -> PersonFeed:
        """A new secret: the old URL answers 404 from the next cycle on."""
        with self._sessions.begin() as s:
            row = self._feed_row(s, person_id, feed_id, lock=True)
            row.secret = secrets.token_urlsafe(24)
            feed = _feed(row)
            notify_feed(s, feed.feed_id)
            s.flush()
            _changed(s)
            return feed

    def remove_feed(self, person_id: int, feed_id: int) -> None:
        with self._sessions.begin() as s:
            row = self._feed_row(s, person_id, feed_id)
            self._forget_feeds(s, [_feed(row).feed_id])
            s.delete(row)
            s.flush()
            _changed(s)

    # --- CalDAV calendars --------------------------------------------------------------------

    def add_target(self, person_id: int, target: NewTarget) -> PersonTarget:
        sealed = self.vault.encrypt(target.password)
        with self._sessions.begin() as s:
            self._row(s, person_id)
            row = PersonTargetRow(
                person_id=person_id,
                url=target.url,
                username=target.username,
                password=sealed,
                calendar=target.calendar,
                include=",".join(target.include),
                timezone=target.timezone,
                writeback=target.writeback,
                created_at=_now(),
            )
            s.add(row)
            s.flush()
            _changed(s)
            return _target(row)

    def remove_target(self, person_id: int, target_id: int) -> None:
        with self._sessions.begin() as s:
            row = s.get(PersonTargetRow, target_id)
            if row is None or row.person_id != person_id:
                raise UnknownPerson(f"{account_key(person_id)} has no calendar with id {target_id}")
            self._forget_targets(s, [_target(row).target_id])
            s.delete(row)
            s.flush()
            _changed(s)

    # --- keys --------------------------------------------------------------------------------

    def rotate_keys(self) -> int:
        """Every stored token and password re-encrypted with the vault's first key, in one
        transaction (a secret no key opens fails it all, and nothing changes). The count."""
        count = 0
        with self._sessions.begin() as s:
            # every row locked: a token refreshed meanwhile is not overwritten by its old value
            for person in s.scalars(select(PersonRow).order_by(PersonRow.id).with_for_update()):
                what = f"the Canvas token of person {person.id}"
                person.access_token = self.vault.rotate(person.access_token, what)
                count += 1
                if person.refresh_token:
                    person.refresh_token = self.vault.rotate(person.refresh_token, what)
                    count += 1
            for target in s.scalars(
                select(PersonTargetRow).order_by(PersonTargetRow.id).with_for_update()
            ):
                what = f"the CalDAV password of {account_key(target.person_id)}.c{target.id}"
                target.password = self.vault.rotate(target.password, what)
                count += 1
        return count
