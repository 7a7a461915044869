"""``calbridge run | sync | feeds | render``: the daemon and its one-shot companions.

Exit codes of ``sync`` are in :mod:`bridge.cli.sync_output`. Config errors exit 3, a bad Canvas
token 6 (see ``bridge.errors``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from bridge.cli import app, new_app
from bridge.cli.options import ConfigOpt, JsonOpt, open_state
from bridge.cli.options import load_settings as _settings
from bridge.daemon.logs import setup_logging
from bridge.errors import UserError

if TYPE_CHECKING:
    from bridge.daemon.cycle import AccountResult, Syncer
    from bridge.model.canvas import AccountSnapshot

__all__ = ["ConfigOpt", "JsonOpt", "_settings"]  # writeback_cmd and others import them from here


@app.command("run")
def run(
    config: Path | None = ConfigOpt,
    log_format: str | None = typer.Option(
        None,
        "--log-format",
        metavar="text|json",
        help="Log line format (overrides format in [logging]).",
    ),
) -> None:
    """The daemon: scheduler + HTTP server, until SIGTERM (systemd Type=notify)."""
    from bridge.daemon.service import Daemon

    settings = _settings(config)
    fmt = log_format or settings.logging.format
    if fmt not in ("text", "json"):
        raise UserError("--log-format must be text or json")
    setup_logging(settings.logging.level, fmt)
    raise typer.Exit(asyncio.run(Daemon(settings, config_path=config).run()))


@app.command("sync")
def sync(
    config: Path | None = ConfigOpt,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Poll and plan; write nothing (no state, no CalDAV, no Canvas)."
    ),
    as_json: bool = JsonOpt,
    account: list[str] = typer.Option(
        [], "--account", metavar="ID", help="Only this account (repeat for more)."
    ),
    wait: float = typer.Option(
        30.0,
        "--wait",
        metavar="SECONDS",
        help="How long to wait for an account the daemon is syncing.",
    ),
) -> None:
    """One full cycle for every account, then exit; the exit code says what failed."""
    from bridge.cli.sync_output import exit_code, human_lines
    from bridge.config import state_vault
    from bridge.daemon.cycle import Syncer
    from bridge.daemon.people import People
    from bridge.daemon.service import run_leased
    from bridge.state import open_state as open_with_keys
    from bridge.web.served import ServedFeeds

    config_settings = _settings(config)
    setup_logging(
        "warning" if as_json else config_settings.logging.level, config_settings.logging.format
    )
    state = open_with_keys(config_settings.state.database_url(), state_vault(config_settings.state))
    people = People(state, config_settings)
    try:
        settings = people.merge(config_settings).settings  # and the people who connected
        chosen = [a for a in settings.accounts if not account or a.id in account]
        unknown = set(account) - {a.id for a in settings.accounts}
        if unknown:
            raise UserError(f"no account with id {', '.join(sorted(unknown))}")
    except BaseException:
        state.close()
        raise
    syncer = Syncer(settings, state, ServedFeeds(), people=people)

    async def go() -> list[AccountResult]:
        try:
            return [
                await run_leased(state, syncer, acct, dry_run=dry_run, wait=wait) for acct in chosen
            ]
        finally:
            await syncer.aclose()

    try:
        results = asyncio.run(go())
    finally:
        state.close()
    if as_json:
        typer.echo(
            json.dumps(
                {"dry_run": dry_run, "accounts": [r.as_dict() for r in results]},
                indent=2,
                default=str,
            )
        )
    else:
        for line in human_lines(results, dry_run=dry_run):
            typer.echo(line)
    raise typer.Exit(exit_code(results))


async def _poll_once(syncer: Syncer, account_id: str) -> AccountSnapshot:
    try:
        snapshot, _ = await syncer.poll(syncer.settings.account(account_id))
        return snapshot
    finally:
        await syncer.aclose()


feeds_app = new_app(help="Feed URLs and secrets.")
app.add_typer(feeds_app, name="feeds")


@feeds_app.callback(invoke_without_command=True)
def feeds(ctx: typer.Context, config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Each feed with its URLs: https, webcal, Google, Outlook, subscribe page (the feeds of
    connected people too)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = config
        return
    from bridge.daemon.people import People
    from bridge.web.links import feed_urls

    config_settings = _settings(config)
    state = open_state(config_settings.state.database_url())
    try:
        merged = People(state, config_settings).merge(config_settings)
        settings = merged.settings
        rows: list[dict[str, Any]] = []
        for feed in settings.feeds:
            urls = feed_urls(
                settings.http.base_url,
                feed.id,
                merged.feed_secrets.get(feed.id) or state.feed_secret(feed.id),
                feed.name or f"Canvas ({feed.id})",
            )
            rows.append(
                {"id": feed.id, "account": feed.account, "include": feed.include, **vars(urls)}
            )
    finally:
        state.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo(f"{row['id']} (account {row['account']}: {', '.join(row['include'])})")
        for key in ("page", "https", "webcal", "google", "outlook_live", "outlook_office"):
            typer.echo(f"  {key:15} {row[key]}")


@feeds_app.command("rotate-secret")
def rotate_secret(
    ctx: typer.Context,
    feed_id: str = typer.Argument(..., metavar="FEED", help="The feed's id."),
    config: Path | None = ConfigOpt,
) -> None:
    """Give a feed a new secret URL; a running daemon stops serving the old one within seconds."""
    from bridge.daemon.service import SECRET_REFRESH

    settings = _settings(config or ctx.obj)
    state = open_state(settings.state.database_url())
    try:
        personal = state.people.feed_by_key(feed_id) if settings.oauth is not None else None
        if personal is not None:  # a connected person's feed keeps its secret with them
            state.people.rotate_feed_secret(personal.person_id, personal.id)
        elif feed_id in {f.id for f in settings.feeds}:
            state.rotate_feed_secret(feed_id)
        else:
            raise UserError(f"no feed with id {feed_id!r}")
    finally:
        state.close()
    typer.echo(
        f"{feed_id}: new secret saved; a running daemon serves the feed only under the new URL "
        f"within {SECRET_REFRESH:g} seconds (the old URL then answers 404); "
        "see `calbridge feeds` for the new URLs"
    )


@app.command("render")
def render(
    feed_id: str = typer.Argument(..., metavar="FEED", help="The feed's id."),
    config: Path | None = ConfigOpt,
    fresh: bool = typer.Option(
        False, "--fresh", help="Poll Canvas now instead of using the last good snapshot."
    ),
) -> None:
    """One feed's ICS on stdout (from the last good snapshot, or a fresh poll)."""
    from datetime import UTC, datetime

    from bridge.daemon.cycle import Syncer
    from bridge.mapping import render_feed
    from bridge.model.canvas import AccountSnapshot
    from bridge.web.served import ServedFeeds

    settings = _settings(config)
    feed = next((f for f in settings.feeds if f.id == feed_id), None)
    if feed is None:
        raise UserError(f"no feed with id {feed_id!r}")
    state = open_state(settings.state.database_url())
    try:
        stored = None if fresh else state.load_snapshot(feed.account)
        if stored is not None:
            snapshot = AccountSnapshot.model_validate_json(stored)
        else:
            snapshot = asyncio.run(_poll_once(Syncer(settings, state, ServedFeeds()), feed.account))
        rendered = render_feed(
            snapshot,
            feed.options(state.journal.aliases(feed.account)),
            state.load_versions(f"feed:{feed.id}"),
            datetime.now(UTC),
        )
    finally:
        state.close()
    sys.stdout.buffer.write(rendered.ics)
