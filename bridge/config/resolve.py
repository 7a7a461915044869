"""Secrets, read at the edge: the schema says where each comes from, this reads it.

Called when a secret is needed — the daemon asks again at every cycle, so a token replaced in
its file (or credential, or variable) is used from the next cycle on, without a restart. The
value never appears in an error: a problem names the key and the source, never the secret.
"""

from __future__ import annotations

import os
from pathlib import Path

from bridge.config.schema import AccountConfig, CalDAVConfig, HttpConfig, SecretSource
from bridge.errors import ConfigError

ADMIN_TOKEN_MIN = 16


def read_secret(section: SecretSource, prefix: str, owner: str) -> str:
    """The secret ``<prefix>`` of ``section`` from its ``_file``, ``_credential`` or ``_env``."""
    file: Path | None = getattr(section, f"{prefix}_file")
    credential: str | None = getattr(section, f"{prefix}_credential")
    env: str | None = getattr(section, f"{prefix}_env")
    key = f"{owner}.{prefix}"
    if file is not None:
        try:
            value = Path(file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {file}: {exc.strerror}", key=f"{key}_file") from None
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
    else:  # the schema's check makes this unreachable for a validated section
        raise ConfigError(f"set one of {prefix}_file, {prefix}_credential or {prefix}_env", key=key)
    if not value:
        raise ConfigError("the secret is empty", key=key)
    return value


def account_token(account: AccountConfig) -> str:
    """The Canvas token of an ``[[accounts]]`` entry, read now."""
    return read_secret(account, "token", f"accounts[{account.id}]")


def caldav_password(target: CalDAVConfig) -> str:
    """The password of a ``[[caldav]]`` entry, read now."""
    return read_secret(target, "password", f"caldav[{target.id}]")


def admin_token(http: HttpConfig) -> str | None:
    """The bearer token /healthz and /metrics ask for, or None when ``admin_token_file`` is unset."""
    if http.admin_token_file is None:
        return None
    try:
        token = Path(http.admin_token_file).read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {http.admin_token_file}: {exc.strerror}", key="http.admin_token_file"
        ) from None
    if len(token) < ADMIN_TOKEN_MIN:
        raise ConfigError(
            f"the token must have at least {ADMIN_TOKEN_MIN} characters",
            key="http.admin_token_file",
        )
    return token
