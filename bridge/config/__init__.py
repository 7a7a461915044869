"""The configuration: one TOML file, ``CALBRIDGE_…`` environment overrides, secrets from
files, environment variables or systemd credentials.

* :mod:`bridge.config.schema` — every key with its default, check and help (the single source);
  the option objects the adapters take are built by its sections;
* :mod:`bridge.config.load` — a file or parsed data into :class:`Settings`, or a ConfigError;
* :mod:`bridge.config.resolve` — secrets, read when needed (never by the schema);
* :mod:`bridge.config.example` — ``config.example.toml``, generated from the schema.
"""

from bridge.config.load import load_config, permission_warnings, settings_from, warn_permissions
from bridge.config.resolve import (
    account_token,
    admin_token,
    caldav_password,
    oauth_client_secret,
    state_vault,
)
from bridge.config.schema import (
    AccountConfig,
    CalDAVConfig,
    ClusterConfig,
    FeedConfig,
    HttpConfig,
    LoggingConfig,
    OAuthConfig,
    Settings,
    StateConfig,
    WritebackConfig,
    default_canvas_limits,
    is_loopback,
    parse_duration,
)

__all__ = [
    "AccountConfig",
    "CalDAVConfig",
    "ClusterConfig",
    "FeedConfig",
    "HttpConfig",
    "LoggingConfig",
    "OAuthConfig",
    "Settings",
    "StateConfig",
    "WritebackConfig",
    "account_token",
    "admin_token",
    "caldav_password",
    "default_canvas_limits",
    "is_loopback",
    "load_config",
    "oauth_client_secret",
    "parse_duration",
    "permission_warnings",
    "settings_from",
    "state_vault",
    "warn_permissions",
]
