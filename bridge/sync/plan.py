"""The pure CalDAV sync planner: desired (Canvas) × actual (server) × status (what we wrote).

Like vdirsyncer's sync algorithm it imports nothing that does I/O: it returns a :class:`Plan`
of actions; :mod:`bridge.sync.execute` runs them. The rules, which are the product's safety rules:

* only events calbridge wrote (in ``status``) are ever updated or deleted;
* a failed poll (``desired is None``) deletes nothing; a poll that suddenly wants nothing while
  the server lists events we own aborts (:class:`~bridge.errors.SafetyAbort`) unless explicitly allowed;
* past events are not deleted unless ``delete_past``;
* creates and updates come before deletes;
* what the person did is only *observed* here (:class:`PersonChanged`, :class:`PersonDeleted`,
  :class:`Unowned`); :mod:`bridge.sync.decide` decides what each means. :func:`restore` gives
  the actions that put Canvas's version back (keeping the person's additions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bridge.errors import CalendarDataError, SafetyAbort
from bridge.mapping.ics_reader import fingerprint
from bridge.mapping.merge import merge_person_additions
from bridge.model.actions import (
    Action,
    Adopt,
    Conflict,
    Create,
    Delete,
    DesiredItem,
    Forget,
    Hide,
    Observation,
    PersonChanged,
    PersonDeleted,
    RemoteItem,
    Unowned,
    Update,
)
from bridge.model.status import ItemStatus


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    unchanged: int = 0

    def ordered(self) -> list[Action]:
        """Writes before deletes; bookkeeping last."""
        writes, removals = in_order(self.actions)
        return writes + removals

    @property
    def empty(self) -> bool:
        """Nothing to do: no action and no edit of the person's to resolve."""
        return not self.actions and not any(
            isinstance(o, PersonChanged | PersonDeleted) for o in self.observations
        )


def plan(
    desired: Mapping[str, DesiredItem] | None,
    actual: Mapping[str, RemoteItem],
    status: Mapping[str, ItemStatus],
    now: datetime,
    *,
    delete_past: bool = False,
    hidden: Mapping[str, str] | None = None,
    allow_empty: bool = False,
) -> Plan:
    """What to do so the calendar matches Canvas. ``actual`` is keyed by href."""
    hidden = hidden or {}
    result = Plan()
    # Only what the server still lists could be deleted: an owned event the person already
    # removed is just forgotten, so it must not hold the calendar in a stop (nothing would
    # ever clear it — it can neither come back from Canvas nor be deleted).
    listed = sum(1 for mine in status.values() if mine.href in actual)
    if desired is not None and not desired and listed and not allow_empty:
        raise SafetyAbort(
            f"Canvas suddenly lists nothing while calbridge owns {listed} events; not deleting them"
        )
    by_uid: dict[str, RemoteItem] = {}
    for item in actual.values():
        if item.uid:
            by_uid.setdefault(item.uid, item)
    for uid, mine in status.items():
        remote = actual.get(mine.href)
        wanted = desired.get(uid) if desired is not None else None
        if remote is None:
            result.observations.append(PersonDeleted(uid, mine, wanted))
            continue
        person_changed = (
            remote.ics is not None and remote.etag != mine.etag and _differs(remote.ics, mine.ics)
        )
        if person_changed:
            assert remote.ics is not None
            result.observations.append(
                PersonChanged(uid, mine.href, remote.etag, remote.ics, mine.ics, wanted)
            )
            continue
        if (
            remote.etag != mine.etag
        ):  # same content, new ETag (the server rewrote it): adopt the ETag
            result.actions.append(Adopt(uid, mine.href, remote.etag, mine.ics, mine.content_hash))
        etag = remote.etag
        if desired is None:
            result.unchanged += 1
        elif wanted is None:
            past = mine is not None and _is_past(mine, now)
            if past and not delete_past:
                result.unchanged += 1
            else:
                result.actions.append(Delete(uid, mine.href, etag))
        elif wanted.content_hash != mine.content_hash:
            result.actions.append(
                Update(
                    uid, mine.href, etag, _keep_additions(wanted.ics, mine.ics), wanted.content_hash
                )
            )
        else:
            result.unchanged += 1
    owned_hrefs = {m.href for m in status.values()}
    for item in actual.values():
        if (
            item.uid
            and item.ics is not None
            and item.href not in owned_hrefs
            and item.uid not in (desired or {})
        ):
            result.observations.append(Unowned(item.uid, item.href, item.etag, item.ics))
    for uid, wanted in (desired or {}).items():
        if uid in status:
            continue
        found = by_uid.get(uid)
        if found is not None:
            if found.ics is not None and not _differs(found.ics, wanted.ics):
                result.actions.append(
                    Adopt(uid, found.href, found.etag, wanted.ics, wanted.content_hash)
                )
            else:
                result.conflicts.append(
                    Conflict(
                        uid, f"{found.href} already holds this UID and calbridge did not write it"
                    )
                )
            continue
        if hidden.get(uid) == wanted.content_hash:
            continue
        result.actions.append(Create(uid, wanted.ics, wanted.content_hash))
    return result


def in_order(actions: Sequence[Action]) -> tuple[list[Action], list[Action]]:
    """Writes (create, update, adopt) first, then deletes and bookkeeping: a crash between the
    two leaves an extra event at worst, never a missing one."""
    writes: list[Action] = [a for a in actions if not isinstance(a, Delete | Forget | Hide)]
    removals: list[Action] = [a for a in actions if isinstance(a, Delete | Forget | Hide)]
    return writes, removals


def restore(
    observation: Observation, hidden: Mapping[str, str], *, whole: bool = False
) -> list[Action]:
    """Put Canvas's version back: a deleted event comes back (unless hidden with the same
    content), a changed one gets Canvas's fields with the person's additions kept. An event
    Canvas no longer has is forgotten (deleted) instead. Never touches an unowned item.

    Raises CalendarDataError when the person's copy cannot be merged (e.g. ``SEQUENCE:abc``):
    the caller reports it for that object and calls again with ``whole`` (ours, without their
    additions) — a silent fallback here would drop the person's additions unreported."""
    if isinstance(observation, Unowned):
        return []
    desired = observation.desired
    if isinstance(observation, PersonDeleted):
        if desired is None or hidden.get(desired.uid) == desired.content_hash:
            return [Forget(observation.uid)]
        return [Create(desired.uid, desired.ics, desired.content_hash)]
    if desired is None:
        return [Delete(observation.uid, observation.href, observation.etag)]
    merged = (
        desired.ics
        if whole
        else merge_person_additions(desired.ics, observation.theirs_ics, context=observation.uid)
    )
    return [
        Update(observation.uid, observation.href, observation.etag, merged, desired.content_hash)
    ]


def _keep_additions(new_ics: str, last_ics: str) -> str:
    """Canvas changed: write its new version, keeping what the person had added (the last
    copy we saw on the server is ``last_ics``)."""
    try:
        return merge_person_additions(new_ics, last_ics)
    except CalendarDataError:
        return new_ics


def _differs(a: str, b: str) -> bool:
    try:
        return fingerprint(a) != fingerprint(b)
    except CalendarDataError:
        return True


def _is_past(mine: ItemStatus, now: datetime) -> bool:
    from bridge.mapping.ics_reader import event_end

    try:
        end = event_end(mine.ics)
    except CalendarDataError:
        return False
    return end is not None and end < now
