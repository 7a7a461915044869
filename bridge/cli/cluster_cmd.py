"""``calbridge cluster status``: the replicas of cluster mode, the job queue and the accounts.

Exit 0 when at least one replica is alive and no account is overdue, 1 otherwise (for a
monitoring check), 3 when the config is not in cluster mode.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from bridge.cli import app, help_without_subcommand, new_app
from bridge.cli.options import ConfigOpt, JsonOpt, load_settings
from bridge.errors import ConfigError

cluster_app = new_app(help="Cluster mode: replicas on one PostgreSQL sharing the accounts.")
app.add_typer(cluster_app, name="cluster")
cluster_app.callback(invoke_without_command=True)(help_without_subcommand)

SHOWN = 20  # accounts listed by name without --all (the overdue ones first)


def _ago(iso: str | None, now: datetime) -> str:
    if iso is None:
        return "never"
    return f"{(now - datetime.fromisoformat(iso)).total_seconds():.1f}s ago"


@cluster_app.command("status")
def status(
    config: Path | None = ConfigOpt,
    as_json: bool = JsonOpt,
    every: bool = typer.Option(False, "--all", help="List every account (else the overdue ones)."),
) -> None:
    """Replicas (heartbeats), queue depth, overdue accounts, each account's last sync and replica.
    Exit 1 when no replica is alive or an account is overdue."""
    from bridge.config import state_vault
    from bridge.daemon.cluster import status as cluster_status
    from bridge.daemon.people import People
    from bridge.state import open_state

    settings = load_settings(config)
    if not settings.cluster.enabled:
        raise ConfigError(
            "cluster mode is off in this config ([cluster] enabled = true, with [state] url on "
            "PostgreSQL)",
            key="cluster.enabled",
        )
    state = open_state(settings.state.database_url(), state_vault(settings.state))
    try:
        accounts = People(state, settings).merge(settings).settings.accounts
        report = cluster_status(state, list(accounts), settings.cluster)
    finally:
        state.close()
    healthy = report["replicas_alive"] > 0 and report["accounts_overdue"] == 0
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        raise typer.Exit(0 if healthy else 1)
    for line in _lines(report, every):
        typer.echo(line)
    raise typer.Exit(0 if healthy else 1)


def _lines(report: dict[str, Any], every: bool) -> list[str]:
    now = datetime.fromisoformat(report["now"])
    replicas = report["replicas"]
    lines = [f"replicas: {report['replicas_alive']} alive of {len(replicas)} known"]
    for r in replicas:
        beat = (
            "no heartbeat" if r["heartbeat_age"] is None else f"heartbeat {r['heartbeat_age']}s ago"
        )
        state = "alive" if r["alive"] else "SILENT"
        lines.append(f"  {r['name']:24} {state:6} {r['listen']}  {beat}")
    q = report["queue"]
    lines.append(
        f"queue: {q['waiting']} waiting, {q['running']} running, "
        f"{q['waiting_to_retry']} waiting to retry, {q['failed']} failed"
    )
    lines.append(f"accounts: {report['accounts_total']}, {report['accounts_overdue']} overdue")
    rows = sorted(report["accounts"], key=lambda a: (not a["overdue"], a["id"]))
    shown = rows if every else [a for a in rows if a["overdue"]][:SHOWN]
    for a in shown:
        lines.append(
            f"  {a['id']:24} {'OVERDUE ' if a['overdue'] else ''}last sync "
            f"{_ago(a['last_sync'], now)} by {a['last_sync_by'] or '-'} "
            f"({a['last_outcome'] or '-'})"
        )
    hidden = (len(rows) if every else report["accounts_overdue"]) - len(shown)
    if hidden > 0:
        lines.append(f"  … and {hidden} more (--all, or --json)")
    return lines
