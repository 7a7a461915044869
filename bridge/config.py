"""The configuration schema: one TOML file, ``CALBRIDGE_…`` environment overrides, secrets
from files, environment variables or systemd credentials.

This module is the single source of truth for keys, defaults and validation (as Radicale's
``config.py`` is for Radicale); ``config.example.toml`` documents every key. Unknown keys are
errors. A bad config raises :class:`~bridge.errors.ConfigError` naming the key, e.g.
``config: accounts[1].poll_interval: "5 minutes" is not a duration (use e.g. 30s, 5m, 1h30m, 7d)``.

Secrets are never required in the file: each ``token`` / ``password`` comes from
``*_file`` (a path), ``*_credential`` (a name under ``$CREDENTIALS_DIRECTORY``, as systemd's
``LoadCredential=`` provides) or ``*_env`` (an environment variable's name). They are read when
needed and never printed.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import stat
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bridge.errors import ConfigError

log = logging.getLogger("bridge.config")

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

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


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretSource(Section):
    """Where one secret comes from; exactly one of the three, read only when needed."""

    def _read_secret(self, prefix: str, owner: str) -> str:
        file: Path | None = getattr(self, f"{prefix}_file")
        credential: str | None = getattr(self, f"{prefix}_credential")
        env: str | None = getattr(self, f"{prefix}_env")
        key = f"{owner}.{prefix}"
        if file is not None:
            try:
                value = Path(file).read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read {file}: {exc.strerror}", key=f"{key}_file"
                ) from None
        elif credential is not None:
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise ConfigError(
                    "$CREDENTIALS_DIRECTORY is not set (is this running under systemd with LoadCredential=?)",
                    key=f"{key}_credential",
                )
            try:
                value = (Path(directory) / credential).read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"credential {credential!r}: {exc.strerror}", key=f"{key}_credential"
                ) from None
        elif env is not None:
            value = os.environ.get(env, "").strip()
            if not value:
                raise ConfigError(f"environment variable {env} is not set", key=f"{key}_env")
        else:
            raise ConfigError(
                f"set one of {prefix}_file, {prefix}_credential or {prefix}_env", key=key
            )
        if not value:
            raise ConfigError("the secret is empty", key=key)
        return value

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
    url: str | None = None  # default: sqlite in $STATE_DIRECTORY or the current directory
    synchronous: Literal["normal", "full"] = Field(
        "normal",
        description="SQLite fsync policy: normal survives a process crash, full also a power loss",
    )

    def database_url(self) -> str:
        """The URL to open: ``url`` (or the default), with ``synchronous=full`` carried along."""
        from bridge.state.db import default_state_url, with_synchronous

        return with_synchronous(self.url or default_state_url(), self.synchronous)


def _check_admin_listen(value: str) -> str:
    if value.strip().lower() in ("", "off"):
        return "off"
    return _check_listen(value)


class HttpConfig(Section):
    listen: Annotated[str, AfterValidator(_check_listen)] = "127.0.0.1:8765"
    public_url: HttpUrl | None = None  # default: http://<listen>
    admin_listen: Annotated[str, AfterValidator(_check_admin_listen)] = Field(
        "127.0.0.1:8766", description='/healthz and /metrics listen here ("off": nowhere)'
    )
    admin_token_file: Path | None = Field(
        None, description="if set, /healthz and /metrics ask for this bearer token"
    )
    max_connections: int = Field(1000, ge=8, le=100_000)
    header_timeout: Duration = timedelta(seconds=10)
    keepalive_timeout: Duration = timedelta(seconds=5)

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.listen}"

    @property
    def admin_enabled(self) -> bool:
        return self.admin_listen != "off"

    def admin_token(self) -> str | None:
        if self.admin_token_file is None:
            return None
        try:
            token = Path(self.admin_token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read {self.admin_token_file}: {exc.strerror}", key="http.admin_token_file"
            ) from None
        if len(token) < 16:
            raise ConfigError(
                "the token must have at least 16 characters", key="http.admin_token_file"
            )
        return token

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
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class WritebackConfig(Section):
    """Limits on what calendar edits may do to Canvas, shared by the daemon and `sync`."""

    max_per_minute: int = Field(
        10, ge=1, le=600, description="Write-backs per account per minute; the rest wait."
    )
    max_per_day: int = Field(
        200, ge=1, le=100_000, description="Write-backs per account per day; the rest wait."
    )
    safety_max_changes: int = Field(
        3,
        ge=0,
        description="More bookings of one calendar than this vanishing or moving in one cycle "
        "stops all write-back for it until `calbridge writebacks approve`.",
    )
    safety_max_fraction: float = Field(
        0.25,
        ge=0,
        le=1,
        description="… or more than this share of its bookings (when at least two change).",
    )


class AccountConfig(SecretSource):
    id: Id
    allow_insecure_http: bool = Field(
        False, description="accept a plain-http canvas_url that is not loopback (warned about)"
    )
    canvas_url: HttpUrl
    token_file: Path | None = None
    token_credential: str | None = None
    token_env: str | None = None
    poll_interval: Duration = timedelta(minutes=5)
    conference_contexts: list[str] = Field(default_factory=list)
    include_managed: bool = True
    max_response_bytes: int = Field(
        8 * 1024 * 1024,
        ge=64 * 1024,
        description="largest Canvas answer read (per page, after decompression)",
    )
    request_deadline: Duration = Field(
        timedelta(seconds=60), description="whole-request deadline, body included"
    )
    poll_deadline: Duration = Field(
        timedelta(minutes=5), description="deadline of one whole poll of the account"
    )

    @field_validator("canvas_url")
    @classmethod
    def _tls(cls, value: str, info: ValidationInfo) -> str:
        from bridge.canvas.client import validate_base_url  # the client's own rule, checked here

        validate_base_url(value)
        return _require_tls(value, info, "the Canvas token")

    # The host named in event UIDs (default: canvas_url's host[:port]). Set it to keep the UIDs
    # when Canvas moves to a new address; the demo sets it so a random simulator port does not
    # change the UIDs on every run.
    uid_host: Annotated[str, AfterValidator(_check_uid_host)] | None = None

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

    def token(self) -> str:
        return self._read_secret("token", f"accounts[{self.id}]")

    @property
    def canvas_host(self) -> str:
        return self.uid_host or urlsplit(self.canvas_url).netloc


class FeedConfig(Section):
    id: Id
    account: str
    include: list[Include] = Field(default_factory=_default_include)
    name: str | None = None
    description: str | None = None
    timezone: Annotated[str | None, AfterValidator(_check_zone)] = None
    window_past: Duration = timedelta(days=30)
    window_future: Duration = timedelta(days=366)
    color: str | None = None
    default_alarm: Duration | None = None
    refresh_interval: Duration = timedelta(hours=1)


class CalDAVConfig(SecretSource):
    id: Id
    account: str
    allow_insecure_http: bool = Field(
        False, description="accept a plain-http url that is not loopback (warned about)"
    )
    url: HttpUrl
    username: str
    password_file: Path | None = None
    password_credential: str | None = None
    password_env: str | None = None
    calendar: str = "Canvas"
    color: str | None = None
    include: list[Include] = Field(default_factory=_default_include)
    timezone: Annotated[str | None, AfterValidator(_check_zone)] = None
    writeback: bool = True
    reserve_by_copy: bool = False
    delete_past: bool = False
    timeout: Duration = timedelta(seconds=30)

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

    def password(self) -> str:
        return self._read_secret("password", f"caldav[{self.id}]")


class Settings(BaseSettings):
    """The whole configuration. Environment: ``CALBRIDGE_HTTP__LISTEN=…`` and so on."""

    model_config = SettingsConfigDict(
        env_prefix="CALBRIDGE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    state: StateConfig = StateConfig()
    http: HttpConfig = HttpConfig()
    logging: LoggingConfig = LoggingConfig()
    writeback: WritebackConfig = WritebackConfig()
    accounts: list[AccountConfig] = Field(default_factory=list)
    feeds: list[FeedConfig] = Field(default_factory=list)
    caldav: list[CalDAVConfig] = Field(default_factory=list)

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


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "tagged-union")) or part in ("literal_error",):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def settings_from(data: dict[str, Any]) -> Settings:
    """Validate a parsed config (tests, the demo) into :class:`Settings` or a ConfigError."""
    try:
        return Settings(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key (see config.example.toml for the keys there are)"
        elif first["type"] == "missing":
            message = "this key is required"
        raise ConfigError(message, key=_location(first["loc"]) or None) from None


def permission_warnings(settings: Settings, config_path: str | Path | None) -> list[str]:
    """One line per config or secret file that the file's group or other users can read."""
    files: list[tuple[str, Path | None]] = [
        ("config file", Path(config_path) if config_path else None)
    ]
    files += [(f"accounts[{a.id}].token_file", a.token_file) for a in settings.accounts]
    files += [(f"caldav[{c.id}].password_file", c.password_file) for c in settings.caldav]
    files.append(("http.admin_token_file", settings.http.admin_token_file))
    warnings = []
    for key, file in files:
        if file is None:
            continue
        try:
            mode = stat.S_IMODE(Path(file).stat().st_mode)
        except OSError:
            continue  # a missing secret file is reported when it is read
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            warnings.append(
                f"{key}: {file} can be read by other users (mode {mode:04o}); run chmod 600 {file}"
            )
    return warnings


def warn_permissions(settings: Settings, config_path: str | Path | None) -> list[str]:
    """:func:`permission_warnings`, each logged as a warning."""
    warnings = permission_warnings(settings, config_path)
    for line in warnings:
        log.warning("%s", line)
    return warnings


def load_config(path: str | Path) -> Settings:
    """Read and validate a TOML config file. Every problem is a one-line ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return settings_from(data)
