"""``calbridge writebacks``: write-backs to Canvas with their outcome (the journal), what is
still pending, safety stops, and ``approve`` to release (or ``--discard``) a stop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from bridge.cli import app
from bridge.cli.daemon_cmd import ConfigOpt, JsonOpt, _settings
from bridge.cli.options import open_state
from bridge.errors import UserError
from bridge.model.outcomes import StopKind, describe_stop

if TYPE_CHECKING:
    from bridge.state.journal import JournalEntry
    from bridge.state.stops import StoredStop

writebacks_app = typer.Typer(
    help="Write-backs to Canvas, pending ones, and safety stops.",
    invoke_without_command=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(writebacks_app, name="writebacks")


def _entry(e: JournalEntry) -> dict[str, Any]:
    return {
        **vars(e),
        "state": str(e.state),
        "created_at": e.created_at.isoformat(),
        "updated_at": e.updated_at.isoformat(),
        "sent_at": e.sent_at.isoformat() if e.sent_at else None,
    }


def _stop(s: StoredStop) -> dict[str, Any]:
    return {
        **vars(s),
        "state": str(s.state),
        "uids": list(s.uids),
        "detected_at": s.detected_at.isoformat(),
        "decided_at": s.decided_at.isoformat() if s.decided_at else None,
    }


@writebacks_app.callback()
def writebacks(
    ctx: typer.Context,
    config: Path | None = ConfigOpt,
    limit: int = typer.Option(50, "--limit", metavar="N", help="How many, newest first."),
    target: str | None = typer.Option(
        None, "--target", metavar="ID", help="Only this CalDAV target."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Recent write-backs (cancel, rebook, reserve) and what Canvas said; pending ones; stops."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = config
        return
    settings = _settings(config)
    state = open_state(settings.state.database_url())
    try:
        entries = state.journal.recent(limit, target)
        open_entries = state.journal.open_entries(target_id=target)
        stops = [s for s in state.stops.all() if target is None or s.target_id == target]
    finally:
        state.close()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "safety_stops": [_stop(s) for s in stops],
                    "pending": [_entry(e) for e in open_entries],
                    "recent": [_entry(e) for e in entries],
                },
                indent=2,
            )
        )
        return
    for s in stops:
        what = describe_stop(s.target_id, StopKind(s.kind), s.changed, s.owned)
        typer.echo(f"SAFETY STOP ({s.state}, since {s.detected_at:%Y-%m-%d %H:%M}): {what}")
    for e in open_entries:
        typer.echo(
            f"PENDING {e.target_id} {e.action} {e.uid} ({e.state}): {e.outcome or 'waiting'}"
        )
    if not entries and not stops:
        typer.echo("(no write-backs yet)")
    for e in entries:
        typer.echo(
            f"{e.updated_at:%Y-%m-%d %H:%M} {e.target_id:12} {e.action:8} {e.state:10} {e.uid}  {e.outcome}"
        )


@writebacks_app.command("approve")
def approve(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="The CalDAV target id whose safety stop to release."),
    discard: bool = typer.Option(
        False, "--discard", help="Put the events back in the calendar instead of writing to Canvas."
    ),
    config: Path | None = ConfigOpt,
) -> None:
    """Release a safety stop: carry the held changes to Canvas on the next sync (or put the
    events back with --discard)."""
    settings = _settings(config or ctx.obj)
    if target not in {t.id for t in settings.caldav}:
        raise UserError(f"no CalDAV target with id {target!r}")
    state = open_state(settings.state.database_url())
    try:
        stop = state.stops.get(target)
        if stop is None:
            raise UserError(f"{target}: there is no safety stop to approve")
        if discard and stop.kind == StopKind.CANVAS_EMPTY:
            raise UserError(
                f"{target}: Canvas lists nothing, so there is nothing to put back; the stop "
                "clears itself when Canvas lists the events again (approve without --discard "
                "to delete them)"
            )
        from bridge.state.stops import StopState

        decided = state.stops.decide(target, StopState.DISCARDED if discard else StopState.APPROVED)
    finally:
        state.close()
    assert decided is not None
    verb = "will be put back in the calendar" if discard else "will be carried to Canvas"
    typer.echo(
        f"{target}: the {len(decided.uids)} held changes {verb} on the next sync "
        "(the daemon's next cycle, or `calbridge sync` now)"
    )
