"""``calbridge check``: is this config usable? Reads only.

It validates the config, asks Canvas who each token belongs to, reaches each CalDAV server and
looks at the state database — without creating or migrating it (an administrator runs this as
root before the service ever started; a database created then would belong to root).
Exit 0 when everything is usable, 1 when something is not, 3 for a config that does not load.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from bridge.cli import app
from bridge.cli.options import ConfigOpt, JsonOpt, default_state_url, load_settings
from bridge.daemon.logs import register_secret
from bridge.errors import BridgeError

if TYPE_CHECKING:
    from bridge.config import Settings
    from bridge.state.inspect import StateInspection


@dataclass(frozen=True)
class Probe:
    """One thing tried: an account's token or a CalDAV target."""

    id: str
    ok: bool
    detail: str


def _probe_account(settings: Settings, acct_id: str) -> Probe:
    from bridge.canvas.client import CanvasClient
    from bridge.config import account_token

    async def who() -> str:
        acct = settings.account(acct_id)
        token = account_token(acct)
        register_secret(token)
        async with CanvasClient(
            acct.canvas_url, token, max_retries=1, backoff_base=0.2, limits=acct.canvas_limits()
        ) as client:
            me = await client.me()
        return f"token of {me.name} (user {me.id})"

    try:
        return Probe(acct_id, True, asyncio.run(who()))
    except BridgeError as exc:
        return Probe(acct_id, False, str(exc))


def _probe_caldav(settings: Settings, target_id: str) -> Probe:
    from bridge.config import caldav_password
    from bridge.dav.discovery import check_target

    target = next(t for t in settings.caldav if t.id == target_id)
    try:
        password = caldav_password(target)
        register_secret(password)
        return Probe(target_id, True, asyncio.run(check_target(target.target_settings(password))))
    except BridgeError as exc:
        return Probe(target_id, False, str(exc))


def _state_line(state: StateInspection) -> str:
    from bridge.state.inspect import SchemaStatus

    match state.status:
        case SchemaStatus.CURRENT:
            return f"state: ok: {state.where} (schema {state.revision})"
        case SchemaStatus.MISSING:
            return (
                f"state: ok: {state.where} does not exist yet; `calbridge run` or `sync` creates it"
            )
        case SchemaStatus.OUTDATED:
            return (
                f"state: ok: {state.where} has schema {state.revision or '(none)'}, older than "
                f"this calbridge's {state.expected}; `calbridge run` or `sync` upgrades it"
            )
        case SchemaStatus.NEWER:
            return (
                f"state: FAILED: {state.where} has schema {state.revision}, unknown to this "
                f"calbridge (newest {state.expected}): it was written by a newer calbridge"
            )
        case _:
            return f"state: FAILED: cannot read {state.where}: {state.detail}"


@app.command("check")
def check(config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Validate the config, try each Canvas token and each CalDAV server, look at the state
    database (without creating or upgrading it); say what is wrong."""
    from bridge.config import permission_warnings
    from bridge.state.inspect import inspect_state

    settings = load_settings(config)
    warnings = [*settings.insecure_warnings()]
    warnings += [f"warning: {w}" for w in permission_warnings(settings, config)]
    accounts = [_probe_account(settings, a.id) for a in settings.accounts]
    caldav = [_probe_caldav(settings, t.id) for t in settings.caldav]
    state = inspect_state(settings.state.url or default_state_url())
    ok = all(p.ok for p in accounts + caldav) and state.ok
    if as_json:
        report = {
            "ok": ok,
            "config": {
                "path": str(config),
                "accounts": len(settings.accounts),
                "feeds": len(settings.feeds),
                "caldav": len(settings.caldav),
            },
            "accounts": [asdict(p) for p in accounts],
            "caldav": [asdict(p) for p in caldav],
            "state": {**asdict(state), "ok": state.ok},
            "warnings": warnings,
        }
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(
            f"config: ok ({len(settings.accounts)} accounts, {len(settings.feeds)} feeds, "
            f"{len(settings.caldav)} CalDAV targets)"
        )
        for warning in warnings:
            typer.echo(warning)
        for kind, probes in (("account", accounts), ("caldav", caldav)):
            for p in probes:
                typer.echo(f"{kind} {p.id}: {'ok' if p.ok else 'FAILED'}: {p.detail}")
        typer.echo(_state_line(state))
    raise typer.Exit(0 if ok else 1)
