"""Institution mode in the daemon: people who connected themselves, run like config accounts.

:class:`People` turns the connected people of the state store into ``[[accounts]]``,
``[[feeds]]`` and ``[[caldav]]`` entries (with every default of the config schema) beside the
config file's, so the scheduler, the cycle, the feed server and /healthz need no second path.
What differs is where secrets come from:

* a person's Canvas client authenticates with :class:`~bridge.canvas.token_auth.RefreshingAuth`
  over their stored tokens, refreshed through the ``[oauth]`` developer key; every refreshed
  token is stored (encrypted) at once;
* a dead refresh token (:class:`~bridge.errors.ReconnectNeeded`) marks the person
  ``reconnect_needed``: they leave the schedule (nothing retries in a loop), their feeds and
  calendars keep their last data until they connect again;
* a person's CalDAV password and feed secrets come from the state store.

It is also what the pages (and ``calbridge users``) call to connect, disable and remove people:
:meth:`People.connect` takes the tokens of a finished sign-in and returns the person.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from bridge import errors, metrics
from bridge.canvas.oauth import CanvasOAuth
from bridge.canvas.token_auth import RefreshingAuth
from bridge.config import CalDAVConfig, FeedConfig, Settings, oauth_client_secret
from bridge.config.schema import person_feed, person_target
from bridge.daemon.logs import register_secret
from bridge.model.people import PERSON_ID, Connection, NewTarget, Person, PersonTarget
from bridge.model.tokens import TokenSet
from bridge.state import StateStore

log = logging.getLogger("bridge.daemon.people")


def person_of(key: str) -> int | None:
    """The person id in an account, feed or calendar id of theirs (``u7``, ``u7.f3``)."""
    match = PERSON_ID.match(key)
    return int(match[1]) if match else None


def target_entry(target_id: str, account_id: str, target: PersonTarget | NewTarget) -> CalDAVConfig:
    """A person's CalDAV calendar as a ``[[caldav]]`` entry, with every check of one (https,
    or http to loopback; a known time zone…): raises pydantic's ``ValidationError``."""
    return person_target(
        target_id,
        account_id,
        url=target.url,
        username=target.username,
        calendar=target.calendar,
        include=list(target.include),
        timezone=target.timezone,
        writeback=target.writeback,
    )


@dataclass(frozen=True)
class Merged:
    """The config file's settings with the connected people added, and what was added."""

    settings: Settings
    people: tuple[Person, ...]
    feed_secrets: dict[str, str]


class People:
    """Connected people for one daemon (or one ``calbridge sync`` / ``users`` command)."""

    def __init__(
        self,
        state: StateStore,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.state = state
        self.settings = settings
        self._transport = transport
        self._now = now
        self._auths: dict[int, RefreshingAuth] = {}
        self._secrets: dict[str, str] = {}
        # the last merge: the settings merged into, what of the people it read, the result,
        # the people's version it read
        self._merged: tuple[Settings, tuple[object, ...], Merged, int | None] | None = None

    @property
    def enabled(self) -> bool:
        """Whether institution mode is configured (an ``[oauth]`` section)."""
        return self.settings.oauth is not None

    def oauth(self) -> CanvasOAuth:
        """The OAuth client of the ``[oauth]`` key (its secret read now)."""
        config = self.settings.oauth
        if config is None:
            raise errors.ConfigError(
                "institution mode is not configured (no [oauth] section)", key="oauth"
            )
        secret = oauth_client_secret(config)
        register_secret(secret)
        return CanvasOAuth(
            config.options(secret, self.settings.http.base_url),
            transport=self._transport,
            now=self._now,
        )

    # --- the people as config entries ---------------------------------------------------------

    def merge(self, settings: Settings) -> Merged:
        """``settings`` (the config file's) plus the people of ``[oauth]``'s Canvas: a
        connected person's account, feeds and calendars; a reconnect-needed person's feeds
        only (served with their last data, not polled); nothing of a disabled person (their
        feeds answer 404 until they are enabled)."""
        self.settings = settings
        config = settings.oauth
        if config is None:
            return Merged(settings, (), {})
        # The people's version first, then the people: a change committed in between is read
        # now and read again next time (its version is newer), never missed.
        version = self.state.people.version()
        last = self._merged
        if last is not None and last[0] is settings and version is not None and last[3] == version:
            # Nothing changed since the last merge (the daemon merges every 2 s): one row read,
            # the same result (sync times in its people records are as they were then).
            return last[2]
        people = tuple(
            p
            for p in self.state.people.all()
            if p.canvas_host == config.canvas_host and p.connection != Connection.DISABLED
        )
        self.count()
        # What the merge reads of each person. When none of this changed (a change to another
        # Canvas host's people) the last result is returned as it is — the same Settings
        # object, so the daemon has nothing to apply — instead of rebuilding a config entry
        # per person (10,000 people: ~0.5 s).
        shape = tuple((p.id, p.connection, p.feeds, p.targets) for p in people)
        if last is not None and last[0] is settings and last[1] == shape:
            result = Merged(last[2].settings, people, last[2].feed_secrets)
            self._merged = (settings, shape, result, version)
            return result
        accounts = list(settings.accounts)
        feeds = list(settings.feeds)
        caldav = list(settings.caldav)
        secrets: dict[str, str] = {}
        for person in people:
            try:
                if person.enabled:
                    accounts.append(config.person_account(person.account_id))
                for feed in person.feeds:
                    feeds.append(
                        person_feed(
                            feed.feed_id,
                            person.account_id,
                            list(feed.include),
                            feed.timezone,
                            feed.name,
                        )
                    )
                    secrets[feed.feed_id] = feed.secret
                for target in person.targets if person.enabled else ():
                    caldav.append(target_entry(target.target_id, person.account_id, target))
            except ValueError as exc:  # e.g. a time zone this system no longer knows
                log.error("person %s: left out, their settings are invalid: %s", person.id, exc)
        self._secrets = secrets
        merged = settings.model_copy(
            update={"accounts": accounts, "feeds": feeds, "caldav": caldav}
        )
        result = Merged(merged, people, secrets)
        self._merged = (settings, shape, result, version)
        return result

    def count(self) -> dict[Connection, int]:
        """People by state, also set on the ``calbridge_people`` gauge."""
        counts = self.state.people.counts()
        for connection, number in counts.items():
            metrics.PEOPLE.labels(str(connection)).set(number)
        return counts

    def feed_secret(self, feed_id: str) -> str | None:
        return self._secrets.get(feed_id)

    # --- what a person's cycle needs ---------------------------------------------------------

    def auth(self, account_id: str) -> RefreshingAuth:
        """The Canvas auth of a person's account: their stored tokens, refreshed (and stored
        again) through the ``[oauth]`` key. Kept between cycles so a refreshed token is used
        until it expires; replaced when the stored tokens changed (they connected again)."""
        person_id = person_of(account_id)
        if person_id is None:
            raise ValueError(f"{account_id!r} is not a connected person's account")
        tokens = self.state.people.tokens(person_id)
        cached = self._auths.get(person_id)
        if cached is not None and cached.tokens.access_token == tokens.access_token:
            return cached
        config = self.settings.oauth
        assert config is not None

        async def stored(fresh: TokenSet) -> None:
            await asyncio.to_thread(self.state.people.store_tokens, person_id, fresh)

        auth = self._auths[person_id] = RefreshingAuth(
            tokens,
            self.oauth().refresh,
            leeway=config.refresh_leeway,
            on_refresh=stored,
            now=self._now,
        )
        return auth

    def target_password(self, target_id: str) -> str:
        match = PERSON_ID.match(target_id)
        if match is None or match[2] is None:
            raise ValueError(f"{target_id!r} is not a connected person's calendar")
        password = self.state.people.target_password(int(match[2]))
        register_secret(password)
        return password

    def polled(self, account_id: str, at: datetime) -> bool:
        """Record a person's successful poll; False when they are no longer connected (removed
        or disabled while Canvas answered): then nothing of the poll may be kept."""
        person_id = person_of(account_id)
        return person_id is not None and self.state.people.record_sync(person_id, at)

    def reconnect_needed(self, account_id: str) -> None:
        """Canvas refused the person's refresh token: out of the schedule until they connect
        again; their feeds and calendars keep what they have."""
        person_id = person_of(account_id)
        if person_id is None:
            return
        self._auths.pop(person_id, None)
        self.state.people.mark_reconnect_needed(person_id)
        log.warning(
            "account %s: Canvas refused the refresh token; marked reconnect needed (the "
            "person must connect again; their feeds keep their last data)",
            account_id,
        )
        self.count()

    # --- connecting and disconnecting --------------------------------------------------------

    def default_include(self) -> list[str]:
        """What a new person's first feed shows: a ``[[feeds]]`` entry's default."""
        return list(FeedConfig.model_fields["include"].get_default(call_default_factory=True))

    def connect(self, tokens: TokenSet) -> Person:
        """A finished sign-in (:meth:`CanvasOAuth.exchange`): the person created with a
        default feed, or found by Canvas host and user id; tokens stored encrypted."""
        config = self.settings.oauth
        if config is None:
            raise errors.ConfigError(
                "institution mode is not configured (no [oauth] section)", key="oauth"
            )
        person, created = self.state.people.connect(
            config.canvas_host, tokens, default_include=self.default_include(), now=self._now()
        )
        self._auths.pop(person.id, None)
        log.info(
            "person %s (Canvas user %s) %s",
            person.account_id,
            person.canvas_user_id,
            "connected" if created else "connected again",
        )
        self.count()
        return person

    def set_connection(self, person_id: int, connection: Connection) -> Person:
        person = self.state.people.set_connection(person_id, connection)
        self._auths.pop(person_id, None)
        self.count()
        return person

    async def remove(
        self,
        person_id: int,
        *,
        before_delete: Callable[[Person], Awaitable[None]] | None = None,
    ) -> Person:
        """Disconnect: the token revoked at Canvas, then the person, their tokens, feeds and
        calendars deleted (feed URLs answer 404). Canvas unreachable: nothing is deleted (run
        it again). A token Canvas no longer knows counts as revoked. ``before_delete`` runs
        between the two (the pages remove the person's events from their calendars there)."""
        person = await asyncio.to_thread(self.state.people.get, person_id)
        tokens = await asyncio.to_thread(self.state.people.tokens, person_id)
        await self.oauth().revoke(tokens)
        if before_delete is not None:
            await before_delete(person)
        removed = await asyncio.to_thread(self.state.people.remove, person_id)
        self._auths.pop(person_id, None)
        log.info("person %s (Canvas user %s) removed", person.account_id, person.canvas_user_id)
        self.count()
        return removed
