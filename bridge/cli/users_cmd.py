"""``calbridge users …`` and ``calbridge keys …``: institution mode for the administrator.

``users`` lists, shows, disables, enables and removes the people who connected themselves with
Canvas sign-in; ``remove`` is the same Disconnect as on their page (the token revoked at
Canvas, then their tokens, feeds and calendars deleted: the feed URLs answer 404). ``keys``
makes and rotates the keys that encrypt their tokens and passwords in the state store.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from bridge.cli import app, help_without_subcommand, new_app
from bridge.cli.options import ConfigOpt, JsonOpt, load_settings
from bridge.errors import BridgeError, UserError

if TYPE_CHECKING:
    from bridge.config import Settings
    from bridge.daemon.people import People
    from bridge.model.people import Person
    from bridge.state import StateStore

users_app = new_app(help="People who connected themselves with Canvas sign-in.")
app.add_typer(users_app, name="users")
users_app.callback(invoke_without_command=True)(help_without_subcommand)

keys_app = new_app(help="The keys that encrypt tokens and passwords in the state store.")
app.add_typer(keys_app, name="keys")
keys_app.callback(invoke_without_command=True)(help_without_subcommand)

_PERSON = re.compile(r"^u?([1-9]\d{0,17})$")


def _check_id(value: str) -> str:
    if _PERSON.match(value.strip()) is None:
        raise typer.BadParameter(
            f"{value!r} is not a person's id (u7, or 7; see `calbridge users list`)"
        )
    return value


def _person_id(value: str) -> int:
    match = _PERSON.match(value.strip())
    assert match is not None  # checked by _check_id while the command line was parsed
    return int(match[1])


PersonArg = typer.Argument(
    ...,
    metavar="ID",
    help="The person's id, as `calbridge users list` shows it (u7, or 7).",
    callback=_check_id,
)


def _open(settings: Settings) -> tuple[StateStore, People]:
    from bridge.config import state_vault
    from bridge.daemon.people import People
    from bridge.state import open_state

    state = open_state(settings.state.database_url(), state_vault(settings.state))
    return state, People(state, settings)


def _get(state: StateStore, person_id: int) -> Person:
    from bridge.state.people import UnknownPerson

    try:
        return state.people.get(person_id)
    except UnknownPerson:
        raise UserError(
            f"no connected person has id u{person_id} (see `calbridge users list`)"
        ) from None


def _row(settings: Settings, person: Person) -> dict[str, Any]:
    from bridge.web.links import feed_urls

    return {
        "id": person.account_id,
        "canvas_user_id": person.canvas_user_id,
        "canvas_host": person.canvas_host,
        "name": person.name,
        "status": str(person.connection),
        "created_at": person.created_at.isoformat(),
        "last_sync_at": person.last_sync_at.isoformat() if person.last_sync_at else None,
        "token_expires_at": (
            person.token_expires_at.isoformat() if person.token_expires_at else None
        ),
        "feeds": [
            {
                "id": feed.feed_id,
                "include": list(feed.include),
                "timezone": feed.timezone or "UTC",
                "url": feed_urls(
                    settings.http.base_url, feed.feed_id, feed.secret, feed.name or "Canvas"
                ).https,
            }
            for feed in person.feeds
        ],
        "targets": [
            {
                "id": target.target_id,
                "url": target.url,
                "username": target.username,
                "calendar": target.calendar,
                "include": list(target.include),
                "writeback": target.writeback,
            }
            for target in person.targets
        ],
    }


def _echo_person(row: dict[str, Any]) -> None:
    synced = row["last_sync_at"] or "never"
    typer.echo(
        f"{row['id']}  {row['name']} (Canvas user {row['canvas_user_id']} at "
        f"{row['canvas_host']})  {row['status']}  last sync {synced}"
    )
    for feed in row["feeds"]:
        typer.echo(
            f"  feed {feed['id']} ({', '.join(feed['include']) or 'nothing'}; "
            f"{feed['timezone']})  {feed['url']}"
        )
    for target in row["targets"]:
        writeback = "write-back on" if target["writeback"] else "write-back off"
        typer.echo(
            f"  caldav {target['id']} {target['username']} at {target['url']} "
            f"(calendar {target['calendar']!r}: {', '.join(target['include'])}; {writeback})"
        )


@users_app.command("list")
def users_list(config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Every connected person: id, Canvas user, status, feeds with their URLs, calendars."""
    settings = load_settings(config)
    state, _ = _open(settings)
    try:
        rows = [_row(settings, person) for person in state.people.all()]
    finally:
        state.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("nobody has connected yet")
    for row in rows:
        _echo_person(row)


@users_app.command("show")
def users_show(
    person: str = PersonArg, config: Path | None = ConfigOpt, as_json: bool = JsonOpt
) -> None:
    """One person: as in the list, and their last poll's outcome."""
    person_id = _person_id(person)
    settings = load_settings(config)
    state, _ = _open(settings)
    try:
        found = _get(state, person_id)
        row = _row(settings, found)
        status = state.account_statuses().get(found.account_id)
    finally:
        state.close()
    row["last_error"] = status.last_error if status and status.consecutive_failures else None
    if as_json:
        typer.echo(json.dumps(row, indent=2))
        return
    _echo_person(row)
    typer.echo(f"  token expires {row['token_expires_at'] or 'never'}")
    if row["last_error"]:
        typer.echo(f"  last error: {row['last_error']}")


def _set(person_id: int, config: Path | None, enable: bool) -> None:
    from bridge.model.people import Connection

    settings = load_settings(config)
    state, people = _open(settings)
    try:
        person = _get(state, person_id)
        if enable and person.connection == Connection.RECONNECT_NEEDED:
            raise UserError(
                f"{person.account_id}: Canvas refused their token; only they can connect again "
                "(enabling would not help)"
            )
        wanted = Connection.CONNECTED if enable else Connection.DISABLED
        people.set_connection(person_id, wanted)
    finally:
        state.close()
    what = (
        "enabled: synced and served again" if enable else "disabled: not synced, feeds answer 404"
    )
    typer.echo(
        f"{person.account_id} ({person.name}) {what} (a running daemon follows within seconds)"
    )


@users_app.command("disable")
def users_disable(person: str = PersonArg, config: Path | None = ConfigOpt) -> None:
    """Stop syncing a person and serving their feeds (their data and tokens are kept)."""
    _set(_person_id(person), config, enable=False)


@users_app.command("enable")
def users_enable(person: str = PersonArg, config: Path | None = ConfigOpt) -> None:
    """Sync a disabled person again."""
    _set(_person_id(person), config, enable=True)


@users_app.command("remove")
def users_remove(person: str = PersonArg, config: Path | None = ConfigOpt) -> None:
    """Disconnect a person: revoke the token at Canvas, delete their tokens, feeds and
    calendars (feed URLs answer 404). The events in their CalDAV calendars stay."""
    person_id = _person_id(person)
    settings = load_settings(config)
    state, people = _open(settings)
    try:
        _get(state, person_id)
        try:
            removed = asyncio.run(people.remove(person_id))
        except BridgeError as exc:  # Canvas did not revoke: nothing deleted, run it again
            typer.echo(
                f"calbridge: u{person_id} was not removed (nothing deleted): {exc}", err=True
            )
            raise typer.Exit(exc.exit_code) from None
    finally:
        state.close()
    typer.echo(
        f"{removed.account_id} ({removed.name}) removed: token revoked at Canvas; "
        f"{len(removed.feeds)} feeds and {len(removed.targets)} calendars deleted"
    )


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new encryption key (for [state] encryption_key_file; one key a line)."""
    from bridge.state.vault import generate_key

    typer.echo(generate_key())


@keys_app.command("rotate")
def keys_rotate(config: Path | None = ConfigOpt) -> None:
    """Re-encrypt every stored token and password with the first key, in one transaction.

    Put the new key first in the key file and keep the old ones after it; run this; then the
    old keys can be removed."""
    from bridge.config import state_vault
    from bridge.state import open_state

    settings = load_settings(config)
    vault = state_vault(settings.state)
    if vault is None:
        raise UserError(
            "no encryption key is configured: set [state] encryption_key_file (or "
            "encryption_key_credential, encryption_key_env)"
        )
    state = open_state(settings.state.database_url(), vault)
    try:
        count = state.people.rotate_keys()
    finally:
        state.close()
    typer.echo(
        f"re-encrypted {count} stored secrets with the first of {vault.key_count} keys "
        f"({vault.source}); the other keys can now be removed"
    )
