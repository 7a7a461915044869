"""The configuration schema: every key, its default, its check and its help, in one place.

Each key is a pydantic field with a ``description`` (the help ``config.example.toml`` is
generated from, see :mod:`bridge.config.example`) and its default; nothing else in calbridge
repeats a default. The option objects the adapters take (:class:`FeedOptions`,
:class:`TargetSettings`, :class:`CanvasLimits`, :class:`PollOptions`) are built here, by the
sections' methods, so the adapters never import the configuration.

Secrets are not read here: the schema holds only where each comes from (``*_file``,
``*_credential`` or ``*_env``); :mod:`bridge.config.resolve` reads them when they are needed.
Unknown keys are errors.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

if TYPE_CHECKING:  # imported where built: loading a config must not load the adapters
    from bridge.canvas.oauth import OAuthOptions
    from bridge.canvas.poller import PollOptions
    from bridge.canvas.transport import CanvasLimits
    from bridge.dav.discovery import TargetSettings
    from bridge.mapping.feed import FeedOptions
    from bridge.sync.decide import Policy

# Not keys, but fixed choices that belong with the defaults: the byte cap of a feed stays under
# Google's ~1 MB limit with room to spare; a CalDAV calendar gets at most this many requests
# in flight at once.
FEED_MAX_BYTES = 900_000
CALDAV_MAX_PARALLEL = 4

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

_S = TypeVar("_S", bound=BaseModel)

Include = Literal["conferences", "reservations", "open_slots", "managed_slots"]


def parse_duration(value: Any) -> timedelta:
    """``"30s"``, ``"5m"``, ``"1h30m"``, ``"7d"`` (or seconds as a number) → timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    text = str(value).strip().lower().replace(" ", "")
    match = _DURATION.match(text)
    if not text or match is None or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 5m, 1h30m, 7d)")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def _check_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(
            f"{value!r} is not a valid id (letters, digits, '_', '.', '-'; at most 63)"
        )
    return value


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.rstrip("/")


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine: 127.0.0.0/8, ::1 or ``localhost``."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _require_tls(url: str, info: ValidationInfo, what: str) -> str:
    """https, or http to loopback, or http with ``allow_insecure_http = true``."""
    insecure = urlsplit(url).scheme.lower() == "http" and not is_loopback(url)
    if insecure and not info.data.get("allow_insecure_http"):
        raise ValueError(
            f"{url!r} is plain http: {what} would cross the network unencrypted; use "
            "https (or, on a network you trust, set allow_insecure_http = true)"
        )
    return url


def _check_zone(value: str | None) -> str | None:
    if value is None or value.upper() == "UTC":
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone name (e.g. Europe/Berlin)") from None
    return value


def _check_uid_host(value: str) -> str:
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9.:-]*$", value):
        raise ValueError(f"{value!r} is not a host name (e.g. canvas.example.edu)")
    return value


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:8765)")
    return value


def _default_include() -> list[Include]:
    return ["conferences", "reservations"]


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Id = Annotated[str, AfterValidator(_check_id)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]


# Field(json_schema_extra=COMMENTED): config.example.toml shows the key commented out (an
# optional key whose example is not meant to be switched on by copying the file).
COMMENTED: dict[str, Any] = {"commented": True}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretSource(Section):
    """A section with a secret: where it comes from, exactly one of three ways."""

    @staticmethod
    def _one_of(values: dict[str, Any], prefix: str) -> None:
        given = [
            k
            for k in (f"{prefix}_file", f"{prefix}_credential", f"{prefix}_env")
            if values.get(k) is not None
        ]
        if len(given) > 1:
            raise ValueError(f"give only one of {', '.join(given)}")
        if not given:
            raise ValueError(
                f"missing {prefix}_file, {prefix}_credential or {prefix}_env (secrets are not written in the file)"
            )


class StateConfig(Section):
    """What calbridge saw and what it wrote."""

    url: str | None = Field(
        None,
        description="Where the state lives (an SQLAlchemy URL). SQLite by default; PostgreSQL "
        'for several replicas, e.g. "postgresql+psycopg://calbridge@db.example.edu/calbridge", '
        "its password from libpq (PGPASSFILE, e.g. a systemd credential; PGPASSWORD; "
        "~/.pgpass), not from this file. Default: $STATE_DIRECTORY/state.sqlite3 under "
        "systemd, else ./calbridge-state.sqlite3.",
        examples=["sqlite:////var/lib/calbridge/state.sqlite3"],
    )
    synchronous: Literal["normal", "full"] = Field(
        "normal",
        description='SQLite only. "normal": write-ahead log and fsync at checkpoints; a crash of '
        "calbridge loses nothing committed, a power loss or OS crash may lose the last "
        'transactions (the database stays consistent). "full": fsync at every commit; survives '
        "a power loss too, with slower writes.",
    )

    encryption_key_file: Path | None = Field(
        None,
        description="Institution mode: the keys that encrypt the Canvas tokens and CalDAV "
        "passwords of people who connected themselves, one per line (`calbridge keys "
        "generate` prints one). The first encrypts, all decrypt: to rotate, put a new key "
        "first, run `calbridge keys rotate`, then drop the old one. A file …",
        examples=["/etc/calbridge/state.keys"],
        json_schema_extra=COMMENTED,
    )
    encryption_key_credential: str | None = Field(
        None,
        description="… or a name under $CREDENTIALS_DIRECTORY (systemd's LoadCredential=) …",
        examples=["state-keys"],
        json_schema_extra=COMMENTED,
    )
    encryption_key_env: str | None = Field(
        None,
        description="… or an environment variable's name (keys separated by commas). At most "
        "one of the three; needed only when [oauth] is set.",
        examples=["CALBRIDGE_STATE_KEYS"],
        json_schema_extra=COMMENTED,
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> StateConfig:
        given = [
            k
            for k in ("encryption_key_file", "encryption_key_credential", "encryption_key_env")
            if getattr(self, k) is not None
        ]
        if len(given) > 1:
            raise ValueError(f"give only one of {', '.join(given)}")
        return self

    @property
    def has_encryption_key(self) -> bool:
        return any(
            getattr(self, k) is not None
            for k in ("encryption_key_file", "encryption_key_credential", "encryption_key_env")
        )

    @property
    def is_postgresql(self) -> bool:
        return (self.url or "").startswith(("postgresql:", "postgresql+", "postgres:"))

    def database_url(self) -> str:
        """The URL to open: ``url`` (or the default), with ``synchronous=full`` carried along."""
        from bridge.state.db import default_state_url, with_synchronous

        return with_synchronous(self.url or default_state_url(), self.synchronous)


def _check_admin_listen(value: str) -> str:
    if value.strip().lower() in ("", "off"):
        return "off"
    return _check_listen(value)


class HttpConfig(Section):
    """The feed server, and the admin listener for /healthz and /metrics."""

    listen: Annotated[str, AfterValidator(_check_listen)] = Field(
        "127.0.0.1:8765",
        description="Address the feed server listens on (host:port; port 0 picks a free one).",
    )
    public_url: HttpUrl | None = Field(
        None,
        description="The public base URL of the feeds, used in every link calbridge prints "
        "(behind a proxy that terminates TLS). Default: http://<listen>. Feed URLs must stay "
        "under 256 characters (Google).",
        examples=["https://calendar.example.edu"],
    )
    admin_listen: Annotated[str, AfterValidator(_check_admin_listen)] = Field(
        "127.0.0.1:8766",
        description="/healthz and /metrics are served only here, never on `listen` (which "
        'answers 404 for them). Keep it on loopback (or a management network); "off" serves '
        "them nowhere. Prometheus scrapes http://<admin_listen>/metrics: on loopback only a "
        "Prometheus on this machine can; for one elsewhere use a private address of this "
        "machine (never one the proxy forwards to or the internet reaches) together with "
        "admin_token_file.",
    )
    admin_token_file: Path | None = Field(
        None,
        description='If set, /healthz and /metrics ask for "Authorization: Bearer <token>" '
        "with the token this file holds (16 characters or more).",
        examples=["/run/credentials/calbridge.service/admin-token"],
        json_schema_extra=COMMENTED,
    )
    max_connections: int = Field(
        1000,
        ge=8,
        le=100_000,
        description="Open connections on `listen`; past it the longest-idle one is closed "
        "(lowered automatically to fit the process's file-descriptor limit).",
    )
    header_timeout: Duration = Field(
        timedelta(seconds=10),
        description="A connection must send complete request headers within this (1s to 5m).",
    )
    keepalive_timeout: Duration = Field(
        timedelta(seconds=5),
        description="An idle kept-alive connection is closed after this (1s to 5m).",
    )

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.listen}"

    @property
    def admin_enabled(self) -> bool:
        return self.admin_listen != "off"

    @model_validator(mode="after")
    def _timeouts(self) -> HttpConfig:
        if not timedelta(seconds=1) <= self.header_timeout <= timedelta(minutes=5):
            raise ValueError("header_timeout must be between 1s and 5m")
        if not timedelta(seconds=1) <= self.keepalive_timeout <= timedelta(minutes=5):
            raise ValueError("keepalive_timeout must be between 1s and 5m")
        if (
            self.admin_enabled
            and self.admin_listen == self.listen
            and not self.listen.endswith(":0")
        ):
            raise ValueError('admin_listen must differ from listen (or be "off")')
        return self


class LoggingConfig(Section):
    """What calbridge writes to stderr (the journal under systemd)."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug | info | warning | error"
    )
    format: Literal["text", "json"] = Field(
        "text", description="text | json (also: calbridge run --log-format json)"
    )


class WritebackConfig(Section):
    """Limits on what calendar edits may do to Canvas, shared by the daemon and `sync`."""

    max_per_minute: int = Field(
        10,
        ge=1,
        le=600,
        description="Write-backs to Canvas per account per minute; the rest wait (visibly).",
    )
    max_per_day: int = Field(
        200,
        ge=1,
        le=100_000,
        description="… and per day. Both are counted in the state store, shared with `sync`.",
    )
    safety_max_changes: int = Field(
        3,
        ge=0,
        description="More bookings of one calendar than this vanishing or moving in one cycle "
        "stops all write-back for it until `calbridge writebacks approve TARGET` (or "
        "`--discard` to put them back).",
    )
    safety_max_fraction: float = Field(
        0.25,
        ge=0,
        le=1,
        description="… or more than this share of its bookings (when at least two change).",
    )


_CRON_SECONDS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)


class ClusterConfig(Section):
    """Cluster mode: several `calbridge run` replicas on one PostgreSQL share the accounts."""

    enabled: bool = Field(
        False,
        description="Run as one replica of several: a job engine in PostgreSQL (procrastinate) "
        "hands each due account to one replica at a time, instead of this process polling every "
        "account itself. Needs [state] url on PostgreSQL; every replica has the same config "
        "(only CALBRIDGE_HTTP__LISTEN differs). Off: one process polls every account "
        "(whatever the database).",
    )
    dispatch_every: Duration = Field(
        timedelta(seconds=2),
        description="How often the due accounts are queued (one replica does it each time): "
        "1s to 60s, a divisor of a minute.",
    )
    concurrency: int = Field(
        8, ge=1, le=256, description="Accounts one replica syncs at the same time."
    )
    heartbeat: Duration = Field(
        timedelta(seconds=5),
        description="How often a replica tells the database it is alive (1s to 1m).",
    )
    stalled_after: Duration = Field(
        timedelta(seconds=30),
        description="A replica silent this long is presumed dead (kill -9, power cut): the "
        "accounts it was syncing are queued again (at least 3 heartbeats).",
    )
    retries: int = Field(
        2,
        ge=0,
        le=10,
        description="A failed sync (Canvas or the database unreachable) is tried again this many "
        "times, after 5s, 25s, … (exponential); then at the next poll interval.",
    )
    keep_failed_jobs: Duration = Field(
        timedelta(days=7),
        description="How long the job engine's failed jobs are kept for inspection (hourly "
        "cleanup; succeeded ones are deleted at once): 1h to 1y.",
    )

    @model_validator(mode="after")
    def _timings(self) -> ClusterConfig:
        every = self.dispatch_every.total_seconds()
        if every not in _CRON_SECONDS:
            raise ValueError(
                "dispatch_every must divide a minute: " + ", ".join(f"{n}s" for n in _CRON_SECONDS)
            )
        if not timedelta(seconds=1) <= self.heartbeat <= timedelta(minutes=1):
            raise ValueError("heartbeat must be between 1s and 1m")
        if self.stalled_after < self.heartbeat * 3:
            raise ValueError("stalled_after must be at least 3 heartbeats")
        if not timedelta(hours=1) <= self.keep_failed_jobs <= timedelta(days=366):
            raise ValueError("keep_failed_jobs must be between 1h and 1y")
        return self


class AccountConfig(SecretSource):
    """One Canvas user (a token)."""

    id: Id = Field(
        description="Letters, digits, _ . - (at most 63); used in logs, metrics and references.",
        examples=["alice"],
    )
    allow_insecure_http: bool = Field(
        False,
        description="true: accept a plain-http canvas_url to another host (the token then "
        "travels unencrypted; calbridge check warns).",
    )
    canvas_url: HttpUrl = Field(
        description="The Canvas instance. https; plain http only to loopback (127.0.0.0/8, "
        "::1, localhost) unless allow_insecure_http = true.",
        examples=["https://canvas.example.edu"],
    )
    token_file: Path | None = Field(
        None,
        description="The token: a file holding it …",
        examples=["/etc/calbridge/alice.token"],
        json_schema_extra=COMMENTED,
    )
    token_credential: str | None = Field(
        None,
        description="… or a name under $CREDENTIALS_DIRECTORY (systemd's LoadCredential=) …",
        examples=["alice"],
    )
    token_env: str | None = Field(
        None,
        description="… or an environment variable's name. Exactly one of the three.",
        examples=["ALICE_TOKEN"],
        json_schema_extra=COMMENTED,
    )
    poll_interval: Duration = Field(
        timedelta(minutes=5),
        description="How often Canvas is asked; at least 10s (Canvas throttles eager clients).",
    )
    conference_contexts: list[str] = Field(
        default_factory=list,
        description='E.g. ["course_12", "group_3"]: every conference of these contexts '
        "(instructors), beyond the ones you take part in.",
    )
    include_managed: bool = Field(
        True,
        description="Also poll appointment groups you manage (only while a feed or calendar"
        " of this account includes managed_slots).",
    )
    keep_parsed_pages: bool = Field(
        True,
        description="Keep what this account's Canvas lists of two pages or more (over 100 "
        "appointment groups) parsed to, between polls: a poll where one page changed then "
        "validates and renders again only that page's groups. Costs ~13 KiB of memory per "
        "group of 5 slots; false: every group validated and compared after any change.",
    )
    max_response_bytes: int = Field(
        8 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest Canvas answer read per page, after decompression (at least "
        "65536); a bigger one fails the poll and the last data is kept.",
    )
    request_deadline: Duration = Field(
        timedelta(seconds=60),
        description="A whole request, body included (a server trickling bytes is cut off); "
        "each retry has its own.",
    )
    poll_deadline: Duration = Field(
        timedelta(minutes=5),
        description="A whole poll of this account, retries included.",
    )
    uid_host: Annotated[str, AfterValidator(_check_uid_host)] | None = Field(
        None,
        description="The host named in event UIDs (default: canvas_url's host[:port]). Keep "
        "the old one when Canvas moves to a new address, so the UIDs stay.",
        examples=["canvas.example.edu"],
        json_schema_extra=COMMENTED,
    )

    @field_validator("canvas_url")
    @classmethod
    def _tls(cls, value: str, info: ValidationInfo) -> str:
        from bridge.canvas.client import validate_base_url  # the client's own rule, checked here

        validate_base_url(value)
        return _require_tls(value, info, "the Canvas token")

    @model_validator(mode="before")
    @classmethod
    def _secret(cls, values: Any) -> Any:
        if isinstance(values, dict):
            cls._one_of(values, "token")
        return values

    @model_validator(mode="after")
    def _interval(self) -> AccountConfig:
        if self.poll_interval < timedelta(seconds=10):
            raise ValueError("poll_interval must be at least 10s (Canvas throttles eager clients)")
        for code in self.conference_contexts:
            if not re.match(r"^(course|group)_\d+$", code):
                raise ValueError(f"conference_contexts: {code!r} is not course_<id> or group_<id>")
        return self

    @property
    def canvas_host(self) -> str:
        return self.uid_host or urlsplit(self.canvas_url).netloc

    def canvas_limits(self) -> CanvasLimits:
        """What one request and one poll of this account may cost."""
        from bridge.canvas.transport import CanvasLimits

        return CanvasLimits(
            self.max_response_bytes,
            self.request_deadline.total_seconds(),
            self.poll_deadline.total_seconds(),
        )

    def poll_options(self) -> PollOptions:
        from bridge.canvas.poller import PollOptions

        return PollOptions(tuple(self.conference_contexts), self.include_managed)


def default_canvas_limits() -> CanvasLimits:
    """The limits of an account that sets none (``calbridge canvas`` without a config)."""
    from bridge.canvas.transport import CanvasLimits

    fields = AccountConfig.model_fields
    return CanvasLimits(
        fields["max_response_bytes"].default,
        fields["request_deadline"].default.total_seconds(),
        fields["poll_deadline"].default.total_seconds(),
    )


class FeedConfig(Section):
    """An ICS feed served at a secret URL (calbridge feeds lists them)."""

    id: Id = Field(description="The feed's name in its URL, logs and metrics.", examples=["alice"])
    account: str = Field(description="The id of the account it shows.", examples=["alice"])
    include: list[Include] = Field(
        default_factory=_default_include,
        description='What it shows: "conferences", "reservations", "open_slots", "managed_slots".',
    )
    name: str | None = Field(
        None,
        description='Calendar name shown in apps (default "Canvas (<id>)").',
        examples=["Canvas"],
    )
    description: str | None = Field(
        None,
        description="Calendar description shown in apps.",
        examples=["Conferences and bookings from Canvas"],
    )
    timezone: Annotated[str | None, AfterValidator(_check_zone)] = Field(
        None,
        description="Local times with an Outlook-safe VTIMEZONE (default: UTC).",
        examples=["Europe/Berlin"],
    )
    window_past: Duration = Field(
        timedelta(days=30), description="Events that ended longer ago are left out."
    )
    window_future: Duration = Field(
        timedelta(days=366), description="Events further ahead are left out."
    )
    color: str | None = Field(
        None,
        description="Optional: a CSS colour name or #rrggbb.",
        examples=["#1f6feb"],
    )
    default_alarm: Duration | None = Field(
        None,
        description="Optional: a reminder this long before each event.",
        examples=["15m"],
    )
    refresh_interval: Duration = Field(
        timedelta(hours=1),
        description="How often clients should fetch the feed (REFRESH-INTERVAL, X-PUBLISHED-TTL).",
    )

    def options(self, reservation_uids: Mapping[int, str]) -> FeedOptions:
        """What :func:`bridge.mapping.render_feed` needs; ``reservation_uids``: rebooked
        reservation id → the UID its event keeps (from the write-back journal)."""
        from bridge.mapping.feed import FeedOptions

        return FeedOptions(
            name=self.name or f"Canvas ({self.id})",
            description=self.description,
            include=frozenset(self.include),
            timezone=self.timezone,
            window_past=self.window_past,
            window_future=self.window_future,
            color=self.color,
            default_alarm=self.default_alarm,
            refresh_interval=self.refresh_interval,
            max_bytes=FEED_MAX_BYTES,
            reservation_uids=dict(reservation_uids),
        )


class CalDAVConfig(SecretSource):
    """A CalDAV calendar calbridge writes into."""

    id: Id = Field(
        description="The target's name in logs, metrics and commands.", examples=["alice-phone"]
    )
    account: str = Field(description="The id of the account it shows.", examples=["alice"])
    allow_insecure_http: bool = Field(
        False,
        description="As for accounts: a plain-http url to another host only if true (the "
        "password then travels unencrypted; calbridge check warns).",
    )
    url: HttpUrl = Field(
        description="Where discovery starts (server or principal URL); no user name or "
        "password in it.",
        examples=["https://dav.example.com/"],
    )
    username: str = Field(description="The CalDAV user name.", examples=["alice"])
    password_file: Path | None = Field(
        None,
        description="The password: a file holding it …",
        examples=["/etc/calbridge/alice-dav.password"],
        json_schema_extra=COMMENTED,
    )
    password_credential: str | None = Field(
        None,
        description="… or a name under $CREDENTIALS_DIRECTORY (systemd's LoadCredential=) …",
        examples=["alice-dav"],
    )
    password_env: str | None = Field(
        None,
        description="… or an environment variable's name. Exactly one of the three.",
        examples=["ALICE_DAV_PASSWORD"],
        json_schema_extra=COMMENTED,
    )
    calendar: str = Field("Canvas", description="The calendar's display name; created if missing.")
    color: str | None = Field(
        None,
        description="Optional: the colour given to the calendar calbridge creates.",
        examples=["#1f6feb"],
    )
    include: list[Include] = Field(
        default_factory=_default_include,
        description='What it shows: "conferences", "reservations", "open_slots", "managed_slots".',
    )
    timezone: Annotated[str | None, AfterValidator(_check_zone)] = Field(
        None, description="Local times with a VTIMEZONE (default: UTC).", examples=["Europe/Berlin"]
    )
    writeback: bool = Field(True, description="Edits in this calendar become Canvas actions.")
    reserve_by_copy: bool = Field(
        False,
        description="A copied open-slot event books that slot (only if its times equal the "
        "slot's and it has no organizer or attendees of someone else).",
    )
    delete_past: bool = Field(False, description="Also delete past events Canvas no longer lists.")
    timeout: Duration = Field(
        timedelta(seconds=30), description="Per request to the CalDAV server."
    )

    @field_validator("url")
    @classmethod
    def _tls(cls, value: str, info: ValidationInfo) -> str:
        return _require_tls(value, info, "the CalDAV password and events")

    @model_validator(mode="before")
    @classmethod
    def _secret(cls, values: Any) -> Any:
        if isinstance(values, dict):
            cls._one_of(values, "password")
        return values

    @field_validator("url", mode="before")
    @classmethod
    def _no_userinfo(cls, value: Any) -> Any:
        # Checked before anything echoes the value: a password in the URL would end up in
        # messages, logs and /healthz. The message names the key, never the URL.
        if isinstance(value, str) and "@" in urlsplit(value.strip()).netloc:
            raise ValueError(
                "a user name or password in the URL is not allowed; "
                "use username and password_file (or password_credential, password_env)"
            )
        return value

    def target_settings(self, password: str) -> TargetSettings:
        """The calendar's connection settings; ``password`` from :mod:`bridge.config.resolve`."""
        from bridge.dav.discovery import TargetSettings

        return TargetSettings(
            id=self.id,
            url=self.url,
            username=self.username,
            password=password,
            calendar=self.calendar,
            color=self.color,
            timeout=self.timeout.total_seconds(),
            max_parallel=CALDAV_MAX_PARALLEL,
            delete_past=self.delete_past,
        )

    def writeback_policy(self, writeback: WritebackConfig) -> Policy:
        """What the calendar's edits may do in Canvas: its own switches and the safety-stop
        thresholds of ``[writeback]``."""
        from bridge.sync.decide import Policy

        return Policy(
            writeback=self.writeback,
            reserve_by_copy=self.reserve_by_copy,
            max_changes=writeback.safety_max_changes,
            max_fraction=writeback.safety_max_fraction,
        )

    def event_options(self, reservation_uids: Mapping[int, str]) -> FeedOptions:
        """Which events go into the calendar and how each is written. The time window is a
        feed's default one (a calendar has no keys for it)."""
        from bridge.mapping.feed import FeedOptions

        feed = FeedConfig.model_fields
        return FeedOptions(
            name=self.calendar,
            description=None,
            include=frozenset(self.include),
            timezone=self.timezone,
            window_past=feed["window_past"].default,
            window_future=feed["window_future"].default,
            color=self.color,
            default_alarm=None,
            refresh_interval=feed["refresh_interval"].default,
            max_bytes=FEED_MAX_BYTES,
            reservation_uids=dict(reservation_uids),
        )


class OAuthConfig(SecretSource):
    """Institution mode: people connect themselves with Canvas sign-in (a developer key)."""

    canvas_url: HttpUrl = Field(
        description="The Canvas instance the developer key belongs to. https; plain http only "
        "to loopback unless allow_insecure_http = true. The key's redirect URI is "
        "<[http] public_url>/oauth/callback.",
        examples=["https://canvas.example.edu"],
    )
    allow_insecure_http: bool = Field(
        False,
        description="true: accept a plain-http canvas_url to another host (tokens then travel "
        "unencrypted).",
    )
    client_id: str = Field(
        description="The developer key's client id (Admin → Developer Keys).",
        examples=["170000000000123"],
    )
    client_secret_file: Path | None = Field(
        None,
        description="The developer key's client secret: a file holding it …",
        examples=["/etc/calbridge/oauth-client-secret"],
        json_schema_extra=COMMENTED,
    )
    client_secret_credential: str | None = Field(
        None,
        description="… or a name under $CREDENTIALS_DIRECTORY (systemd's LoadCredential=) …",
        examples=["oauth-client-secret"],
    )
    client_secret_env: str | None = Field(
        None,
        description="… or an environment variable's name. Exactly one of the three.",
        examples=["CANVAS_CLIENT_SECRET"],
        json_schema_extra=COMMENTED,
    )
    scopes: list[str] = Field(
        default_factory=list,
        description="For a key that enforces scopes: exactly what `calbridge oauth scopes` "
        "prints. Empty for a key that does not.",
    )
    purpose: str | None = Field(
        "calbridge calendars",
        description="Shown to each person on their Canvas profile, next to the token.",
    )
    timeout: Duration = Field(
        timedelta(seconds=30), description="Per request to Canvas's OAuth2 endpoints."
    )
    refresh_leeway: Duration = Field(
        timedelta(minutes=5),
        description="An access token is refreshed this long before it expires (Canvas's "
        "last one hour).",
    )
    session_lifetime: Duration = Field(
        timedelta(days=7),
        description="How long a sign-in on the personal pages lasts (from signing in with "
        "Canvas); then the person signs in again. The session cookie is signed with a key "
        "derived from the [state] encryption key, so every replica accepts it.",
    )
    sign_in_per_minute: int = Field(
        30,
        ge=1,
        description="Sign-ins (Connect with Canvas, and Canvas's answer) one client address may "
        "start per minute, in a burst or spread out; more get a 429 page. Raise it when many "
        "people share one address (a campus NAT).",
    )
    local_calendars: bool | None = Field(
        None,
        description="Whether people may add CalDAV calendars at loopback, private or link-local "
        "addresses (this server's own network: its admin listener, internal services). Default: "
        "only when [http] public_url is itself on loopback (a demo or a test).",
        json_schema_extra=COMMENTED,
    )

    def local_calendars_allowed(self, public_url: str) -> bool:
        return self.local_calendars if self.local_calendars is not None else is_loopback(public_url)

    @field_validator("canvas_url")
    @classmethod
    def _tls(cls, value: str, info: ValidationInfo) -> str:
        return _require_tls(value, info, "Canvas tokens")

    @model_validator(mode="before")
    @classmethod
    def _secret(cls, values: Any) -> Any:
        if isinstance(values, dict):
            cls._one_of(values, "client_secret")
        return values

    @property
    def canvas_host(self) -> str:
        """The host[:port] people are kept under (with their Canvas user id)."""
        return urlsplit(self.canvas_url).netloc

    def options(self, client_secret: str, public_url: str) -> OAuthOptions:
        """What :class:`~bridge.canvas.oauth.CanvasOAuth` takes; the redirect URI is
        ``{public_url}/oauth/callback``."""
        from bridge.canvas.oauth import OAuthOptions

        return OAuthOptions(
            canvas_url=self.canvas_url,
            client_id=self.client_id,
            client_secret=client_secret,
            redirect_uri=f"{public_url.rstrip('/')}/oauth/callback",
            scopes=tuple(self.scopes),
            purpose=self.purpose,
            timeout=self.timeout.total_seconds(),
        )

    def person_account(self, account_id: str) -> AccountConfig:
        """A connected person's account, with every default of ``[[accounts]]``. It names no
        token source: its token comes from the state store (encrypted), refreshed through
        this key."""
        return _without_secret(
            AccountConfig,
            {
                "id": account_id,
                "canvas_url": self.canvas_url,
                "allow_insecure_http": self.allow_insecure_http,
                "include_managed": True,
            },
            "token",
        )


def _without_secret(model: type[_S], values: dict[str, Any], prefix: str) -> _S:
    """``model`` validated from ``values`` (every check and default applies) but naming no
    secret source: for entries whose secret is kept encrypted in the state store. Asking
    :mod:`bridge.config.resolve` for its secret is then a ConfigError, never a wrong secret."""
    checked = model.model_validate({**values, f"{prefix}_env": "-"})
    return checked.model_copy(update={f"{prefix}_env": None})


def person_feed(
    feed_id: str, account_id: str, include: list[str], timezone: str | None, name: str | None
) -> FeedConfig:
    """A connected person's feed as a ``[[feeds]]`` entry (the defaults of one)."""
    values: dict[str, Any] = {"id": feed_id, "account": account_id, "include": include}
    if timezone:
        values["timezone"] = timezone
    if name:
        values["name"] = name
    return FeedConfig.model_validate(values)


def person_target(
    target_id: str,
    account_id: str,
    *,
    url: str,
    username: str,
    calendar: str,
    include: list[str],
    timezone: str | None,
    writeback: bool,
) -> CalDAVConfig:
    """A connected person's CalDAV calendar as a ``[[caldav]]`` entry, its password kept in
    the state store."""
    values: dict[str, Any] = {
        "id": target_id,
        "account": account_id,
        "url": url,
        "username": username,
        "calendar": calendar,
        "include": include,
        "writeback": writeback,
    }
    if timezone:
        values["timezone"] = timezone
    return _without_secret(CalDAVConfig, values, "password")


class Settings(BaseSettings):
    """The whole configuration. Environment: ``CALBRIDGE_HTTP__LISTEN=…`` and so on."""

    model_config = SettingsConfigDict(
        env_prefix="CALBRIDGE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    state: StateConfig = StateConfig()
    http: HttpConfig = HttpConfig()
    logging: LoggingConfig = LoggingConfig()
    writeback: WritebackConfig = WritebackConfig()
    cluster: ClusterConfig = ClusterConfig()
    accounts: list[AccountConfig] = Field(default_factory=list)
    feeds: list[FeedConfig] = Field(default_factory=list)
    caldav: list[CalDAVConfig] = Field(default_factory=list)
    oauth: OAuthConfig | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (the file's data arrives as init kwargs).
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _references(self) -> Settings:
        for kind, items in (
            ("accounts", self.accounts),
            ("feeds", self.feeds),
            ("caldav", self.caldav),
        ):
            ids = [item.id for item in items]
            for ident in ids:
                if ids.count(ident) > 1:
                    raise ValueError(f"{kind}: id {ident!r} is used twice")
        if self.oauth is not None:
            from bridge.model.people import is_person_key

            for kind, items in (
                ("accounts", self.accounts),
                ("feeds", self.feeds),
                ("caldav", self.caldav),
            ):
                for item in items:
                    if is_person_key(item.id):
                        raise ValueError(
                            f"{kind}: id {item.id!r} has the shape of the ids given to people "
                            "who connect themselves (u<n>, u<n>.f<n>, u<n>.c<n>); rename it"
                        )
            if not self.state.has_encryption_key:
                raise ValueError(
                    "[oauth] needs [state] encryption_key_file (or _credential, _env): the "
                    "tokens of people who connect are stored encrypted"
                )
        if self.cluster.enabled and not self.state.is_postgresql:
            raise ValueError(
                "cluster.enabled needs [state] url on PostgreSQL "
                '(e.g. "postgresql+psycopg://calbridge@db/calbridge"): the replicas share it'
            )
        accounts = {a.id for a in self.accounts}
        for kind, items in (("feeds", self.feeds), ("caldav", self.caldav)):
            for item in items:
                if item.account not in accounts:
                    raise ValueError(
                        f"{kind}[{item.id}].account: no account with id {item.account!r}"
                    )
        from bridge.web.links import url_too_long  # the feed server's rule, checked here

        for feed in self.feeds:
            too_long = url_too_long(self.http.base_url, feed.id)
            if too_long:
                raise ValueError(f"http.public_url: {too_long}")
        return self

    def account(self, account_id: str) -> AccountConfig:
        return next(a for a in self.accounts if a.id == account_id)

    def insecure_warnings(self) -> list[str]:
        """One line per plain-http URL allowed by ``allow_insecure_http`` (what check prints)."""
        lines = []
        for acct in self.accounts:
            if urlsplit(acct.canvas_url).scheme == "http" and not is_loopback(acct.canvas_url):
                lines.append(
                    f"account {acct.id}: WARNING: canvas_url {acct.canvas_url} is plain http "
                    "(allow_insecure_http = true): the Canvas token travels unencrypted"
                )
        for target in self.caldav:
            if urlsplit(target.url).scheme == "http" and not is_loopback(target.url):
                lines.append(
                    f"caldav {target.id}: WARNING: url {target.url} is plain http "
                    "(allow_insecure_http = true): the CalDAV password travels unencrypted"
                )
        return lines
