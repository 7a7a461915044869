"""``calbridge canvas …``: the Canvas APIs by hand, against any Canvas.

The base URL and token come from ``--url`` / ``--token-file``, or ``CANVAS_URL`` /
``CANVAS_TOKEN`` (also ``CALBRIDGE_CANVAS_URL`` / ``CALBRIDGE_CANVAS_TOKEN``), or an account of
a config file (``-c CONFIG --account ID``, or ``$CALBRIDGE_CONFIG`` like every other command);
an explicit ``--token-file`` wins over the config. There is deliberately no ``--token VALUE``
option: a token on the command line shows in ``ps``. Each command prints a readable table, or
JSON with its own ``--json``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from bridge.cli import app, help_without_subcommand, new_app
from bridge.cli.options import JsonOpt
from bridge.errors import UserError

if TYPE_CHECKING:
    from bridge.canvas.client import CanvasClient

T = TypeVar("T")

canvas_app = new_app(help="Call the Canvas APIs by hand (conferences, Scheduler).")
groups_app = new_app(help="Appointment groups (Scheduler).")
canvas_app.add_typer(groups_app, name="groups")
app.add_typer(canvas_app, name="canvas")
groups_app.callback(invoke_without_command=True)(help_without_subcommand)

UrlOpt = typer.Option(None, "--url", metavar="URL", help="Canvas base URL (or $CANVAS_URL).")
TokenFileOpt = typer.Option(
    None, "--token-file", metavar="FILE", help="File holding the token (or $CANVAS_TOKEN)."
)
ConfigOpt = typer.Option(
    None,
    "--config",
    "-c",
    envvar="CALBRIDGE_CONFIG",
    metavar="CONFIG",
    help="Take URL and token from this config file…",
)
AccountOpt = typer.Option(
    None, "--account", metavar="ID", help="…for this account id (default: the first)."
)


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def resolve_credentials(
    url: str | None, token_file: Path | None, config: Path | None = None, account: str | None = None
) -> tuple[str, str]:
    """Where the CLI finds Canvas: options, then a config account, then the environment.

    An explicit ``--token-file`` wins over the config's token (the config may come from
    ``$CALBRIDGE_CONFIG``, set for the daemon's sake), as ``--url`` wins over its URL."""
    base = url
    if config is not None:
        from bridge.config import account_token, load_config  # imported only when asked

        settings = load_config(config)
        chosen = [a for a in settings.accounts if account in (None, a.id)]
        if not chosen:
            raise UserError(f"no account {account!r} in {config}")
        base = url or chosen[0].canvas_url
        if token_file is None:
            return base, account_token(chosen[0])
    base = base or _env("CANVAS_URL", "CALBRIDGE_CANVAS_URL")
    if not base:
        raise UserError("no Canvas URL: pass --url, set CANVAS_URL, or use -c CONFIG")
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise UserError(f"--token-file {token_file}: {exc.strerror}") from None
        if not token:
            raise UserError(f"--token-file {token_file} is empty")
        return base, token
    env_token = _env("CANVAS_TOKEN", "CALBRIDGE_CANVAS_TOKEN")
    if not env_token:
        raise UserError("no Canvas token: pass --token-file, set CANVAS_TOKEN, or use -c CONFIG")
    return base, env_token


def _run(ctx: typer.Context, call: Callable[[CanvasClient], Awaitable[T]]) -> T:
    opts = ctx.obj or {}
    url, token = resolve_credentials(
        opts.get("url"), opts.get("token_file"), opts.get("config"), opts.get("account")
    )

    from bridge.canvas.client import CanvasClient, validate_base_url
    from bridge.config import default_canvas_limits

    try:  # a config's canvas_url was checked when it loaded; --url and CANVAS_URL are here
        validate_base_url(url)
    except ValueError as exc:
        raise UserError(f"{'--url' if opts.get('url') else 'CANVAS_URL'}: {exc}") from None

    async def go() -> T:
        async with CanvasClient(url, token, limits=default_canvas_limits()) as client:
            return await call(client)

    return asyncio.run(go())


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _dump(value: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def _print(
    as_json: bool,
    value: Any,
    rows: Callable[[], Sequence[Sequence[Any]]],
    headers: Sequence[str],
) -> None:
    if as_json:
        typer.echo(json.dumps(_dump(value), indent=2))
        return
    table = [list(headers)] + [[str(c) for c in row] for row in rows()]
    if len(table) == 1:
        typer.echo("(none)")
        return
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    for row in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@canvas_app.callback(invoke_without_command=True)
def canvas_options(
    ctx: typer.Context,
    url: str | None = UrlOpt,
    token_file: Path | None = TokenFileOpt,
    config: Path | None = ConfigOpt,
    account: str | None = AccountOpt,
) -> None:
    """Where Canvas is and whose token to use; each subcommand has its own --json."""
    help_without_subcommand(ctx)
    ctx.obj = {"url": url, "token_file": token_file, "config": config, "account": account}


@canvas_app.command("whoami")
def whoami(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Who the token belongs to."""
    me = _run(ctx, lambda c: c.me())
    _print(
        as_json,
        me,
        lambda: [[me.id, me.name, me.login_id or "", me.time_zone or ""]],
        ["ID", "NAME", "LOGIN", "TIME ZONE"],
    )


@canvas_app.command("conferences")
def conferences(
    ctx: typer.Context,
    live: bool = typer.Option(False, "--live", help="Only conferences live now."),
    course: int | None = typer.Option(
        None, "--course", metavar="ID", help="Every conference of this course."
    ),
    group: int | None = typer.Option(
        None, "--group", metavar="ID", help="Every conference of this group."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """List conferences (yours, or a course's or group's)."""
    if course is not None and group is not None:
        raise UserError("use --course or --group, not both")
    if course is not None:
        found = _run(ctx, lambda c: c.course_conferences(course))
    elif group is not None:
        found = _run(ctx, lambda c: c.group_conferences(group))
    else:
        found = _run(ctx, lambda c: c.conferences(live=live))
    _print(
        as_json,
        found,
        lambda: [
            [
                x.id,
                x.title,
                x.context_code or "",
                _when(x.start_at or x.started_at),
                "ended" if x.ended_at else "",
                x.url or "",
            ]
            for x in found
        ],
        ["ID", "TITLE", "CONTEXT", "STARTS", "STATE", "URL"],
    )


def _group_rows(groups: list[Any]) -> list[list[Any]]:
    return [
        [
            g.id,
            g.title,
            g.workflow_state or "",
            _when(g.start_at),
            ",".join(g.context_codes),
            len(g.appointments) or g.appointments_count or 0,
            len(g.reserved_times),
        ]
        for g in groups
    ]


GROUP_HEADERS = ["ID", "TITLE", "STATE", "STARTS", "CONTEXTS", "SLOTS", "RESERVED"]
GroupArg = typer.Argument(..., metavar="GROUP", help="Appointment group id.")
ReasonOpt = typer.Option(None, "--reason", metavar="TEXT", help="Why (Canvas keeps it).")
DescriptionOpt = typer.Option(None, "--description", metavar="TEXT", help="Description.")
LocationOpt = typer.Option(None, "--location", metavar="TEXT", help="Location name.")
AddressOpt = typer.Option(None, "--address", metavar="TEXT", help="Location address.")
PerSlotOpt = typer.Option(None, "--per-slot", metavar="N", help="Participants per slot.")
MaxOpt = typer.Option(None, "--max", metavar="N", help="Max slots per participant.")
MinOpt = typer.Option(None, "--min", metavar="N", help="Min slots per participant.")
VisibilityOpt = typer.Option(
    None, "--visibility", metavar="private|protected", help="Who sees who else signed up."
)


@groups_app.command("list")
def groups_list(
    ctx: typer.Context,
    scope: str = typer.Option(
        "reservable", "--scope", metavar="reservable|manageable", help="Which groups."
    ),
    include: list[str] = typer.Option(
        ["appointments", "reserved_times"],
        "--include",
        metavar="WHAT",
        help="include[] values (repeat for more).",
    ),
    past: bool = typer.Option(False, "--past", help="Include past appointment groups."),
    context: list[str] = typer.Option(
        [], "--context", metavar="CODE", help="Limit to context codes (course_1…); repeatable."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """List appointment groups you can reserve or manage."""
    found = _run(ctx, lambda c: c.appointment_groups(scope, include, context, past))
    _print(as_json, found, lambda: _group_rows(found), GROUP_HEADERS)


@groups_app.command("show")
def groups_show(
    ctx: typer.Context,
    group_id: int = typer.Argument(..., metavar="GROUP", help="Appointment group id."),
    children: bool = typer.Option(False, "--children", help="Include reservations."),
    as_json: bool = JsonOpt,
) -> None:
    """One appointment group with its slots."""
    group = _run(
        ctx, lambda c: c.appointment_group(group_id, ("child_events",) if children else ())
    )
    _print(
        as_json,
        group,
        lambda: [
            [
                s.id,
                _when(s.start_at),
                _when(s.end_at),
                s.workflow_state or "",
                "" if s.available_slots is None else s.available_slots,
                "yes" if s.reserved else "",
            ]
            for s in group.appointments
        ],
        ["SLOT", "START", "END", "STATE", "PLACES LEFT", "RESERVED BY YOU"],
    )


def _parse_slot(text: str) -> tuple[datetime, datetime]:
    from bridge.model.canvas import to_utc

    start, sep, end = text.partition("/")
    try:
        parsed = (to_utc(start), to_utc(end))
    except ValueError:
        parsed = (None, None)
    if not sep or not isinstance(parsed[0], datetime) or not isinstance(parsed[1], datetime):
        raise UserError(
            f"--slot {text!r}: use START/END in ISO 8601, e.g. 2026-05-04T15:00Z/2026-05-04T15:30Z"
        )
    return parsed[0], parsed[1]


def _group_fields(
    title: str | None,
    description: str | None,
    location: str | None,
    address: str | None,
    per_slot: int | None,
    max_: int | None,
    min_: int | None,
    visibility: str | None,
    slot: list[str],
    publish: bool,
) -> dict[str, Any]:
    if visibility not in (None, "private", "protected"):
        raise UserError("--visibility must be private or protected")
    return {
        "title": title,
        "description": description,
        "location_name": location,
        "location_address": address,
        "participants_per_appointment": per_slot,
        "max_appointments_per_participant": max_,
        "min_appointments_per_participant": min_,
        "participant_visibility": visibility,
        "new_appointments": [_parse_slot(s) for s in slot],
        "publish": publish,
    }


SlotOpt = typer.Option(
    [], "--slot", metavar="START/END", help="A new slot, in ISO 8601; repeat for more."
)


@groups_app.command("create")
def groups_create(
    ctx: typer.Context,
    context: list[str] = typer.Option(
        ..., "--context", metavar="CODE", help="Course context code(s), e.g. course_1."
    ),
    title: str = typer.Option(..., "--title", metavar="TEXT", help="The group's title."),
    description: str | None = DescriptionOpt,
    location: str | None = LocationOpt,
    address: str | None = AddressOpt,
    per_slot: int | None = PerSlotOpt,
    max_: int | None = MaxOpt,
    min_: int | None = MinOpt,
    visibility: str | None = VisibilityOpt,
    slot: list[str] = SlotOpt,
    publish: bool = typer.Option(False, "--publish", help="Publish at once."),
    as_json: bool = JsonOpt,
) -> None:
    """Create an appointment group (pending unless --publish)."""
    fields = _group_fields(
        None, description, location, address, per_slot, max_, min_, visibility, slot, publish
    )
    fields.pop("title")
    group = _run(ctx, lambda c: c.create_appointment_group(context, title, **fields))
    _print(
        as_json,
        group,
        lambda: (
            _group_rows([group])
            + [
                ["", f"new slot {s.id}", "", _when(s.start_at), "", "", ""]
                for s in group.new_appointments
            ]
        ),
        GROUP_HEADERS,
    )


@groups_app.command("update")
def groups_update(
    ctx: typer.Context,
    group_id: int = GroupArg,
    title: str | None = typer.Option(None, "--title", metavar="TEXT", help="A new title."),
    description: str | None = DescriptionOpt,
    location: str | None = LocationOpt,
    address: str | None = AddressOpt,
    per_slot: int | None = PerSlotOpt,
    max_: int | None = MaxOpt,
    min_: int | None = MinOpt,
    visibility: str | None = VisibilityOpt,
    slot: list[str] = SlotOpt,
    publish: bool = typer.Option(False, "--publish", help="Publish the group."),
    as_json: bool = JsonOpt,
) -> None:
    """Update an appointment group; --slot adds slots, --publish publishes."""
    fields = _group_fields(
        title, description, location, address, per_slot, max_, min_, visibility, slot, publish
    )
    group = _run(ctx, lambda c: c.update_appointment_group(group_id, **fields))
    _print(as_json, group, lambda: _group_rows([group]), GROUP_HEADERS)


@groups_app.command("delete")
def groups_delete(
    ctx: typer.Context,
    group_id: int = GroupArg,
    reason: str | None = ReasonOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Delete an appointment group with its slots and reservations."""
    group = _run(ctx, lambda c: c.delete_appointment_group(group_id, reason))
    _print(as_json, group, lambda: _group_rows([group]), GROUP_HEADERS)


StatusOpt = typer.Option(
    "all", "--status", metavar="all|registered|unregistered", help="Which participants."
)


@groups_app.command("users")
def groups_users(
    ctx: typer.Context, group_id: int = GroupArg, status: str = StatusOpt, as_json: bool = JsonOpt
) -> None:
    """Users who are (or may be) participating."""
    users = _run(ctx, lambda c: c.appointment_group_users(group_id, status))
    _print(
        as_json,
        users,
        lambda: [[u.id, u.name, u.sortable_name or ""] for u in users],
        ["ID", "NAME", "SORTABLE NAME"],
    )


@groups_app.command("groups")
def groups_groups(
    ctx: typer.Context, group_id: int = GroupArg, status: str = StatusOpt, as_json: bool = JsonOpt
) -> None:
    """Student groups that are (or may be) participating."""
    groups = _run(ctx, lambda c: c.appointment_group_groups(group_id, status))
    _print(
        as_json,
        groups,
        lambda: [[g.id, g.name, len(g.users)] for g in groups],
        ["ID", "NAME", "MEMBERS"],
    )


@groups_app.command("next")
def groups_next(
    ctx: typer.Context,
    group: list[int] = typer.Option(
        [], "--group", metavar="ID", help="Limit to this appointment group; repeatable."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """The next slot available to sign up for."""
    event = _run(ctx, lambda c: c.next_appointment(group))
    rows = (
        [[event.id, event.title, _when(event.start_at), event.appointment_group_id or ""]]
        if event
        else []
    )
    _print(as_json, event, lambda: rows, ["SLOT", "TITLE", "START", "GROUP"])


def _event_rows(e: Any) -> list[list[Any]]:
    return [
        [
            e.id,
            e.title,
            _when(e.start_at),
            _when(e.end_at),
            e.workflow_state or "",
            e.parent_event_id or "",
        ]
    ]


EVENT_HEADERS = ["ID", "TITLE", "START", "END", "STATE", "SLOT"]


@canvas_app.command("event")
def event(
    ctx: typer.Context,
    event_id: int = typer.Argument(..., metavar="EVENT", help="Calendar event id."),
    as_json: bool = JsonOpt,
) -> None:
    """One calendar event (slot or reservation)."""
    found = _run(ctx, lambda c: c.calendar_event(event_id))
    _print(as_json, found, lambda: _event_rows(found), EVENT_HEADERS)


@canvas_app.command("reserve")
def reserve(
    ctx: typer.Context,
    slot_id: int = typer.Argument(..., metavar="SLOT", help="The slot's calendar event id."),
    participant: int | None = typer.Option(
        None, "--participant", metavar="ID", help="Reserve for this user/group (managers)."
    ),
    comments: str | None = typer.Option(
        None, "--comments", metavar="TEXT", help="Comments for the reservation."
    ),
    cancel_existing: bool = typer.Option(
        False, "--cancel-existing", help="Swap: cancel your other reservations in the group."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Reserve a slot."""
    made = _run(
        ctx,
        lambda c: c.reserve(
            slot_id, participant_id=participant, comments=comments, cancel_existing=cancel_existing
        ),
    )
    _print(as_json, made, lambda: _event_rows(made), EVENT_HEADERS)


@canvas_app.command("cancel")
def cancel(
    ctx: typer.Context,
    reservation_id: int = typer.Argument(
        ..., metavar="RESERVATION", help="The reservation's calendar event id."
    ),
    reason: str | None = ReasonOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Cancel a reservation."""
    done = _run(ctx, lambda c: c.cancel_reservation(reservation_id, reason))
    _print(as_json, done, lambda: _event_rows(done), EVENT_HEADERS)
