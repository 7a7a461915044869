"""Typed Canvas objects, tolerant of what real Canvas sends.

These mirror the JSON of the Conferences, Appointment Groups and Calendar Events APIs as real
Canvas emits it (``../shared/canvas-api/canvas-behaviour.md``), not only as documented:

* unknown fields are ignored, so a Canvas upgrade never breaks parsing;
* every time becomes an aware UTC ``datetime`` (Canvas sends ``…Z``; the documents show
  offsets such as ``-06:00``; BigBlueButton recordings send integer epoch milliseconds);
* 0/1 integers are accepted wherever a boolean is meant (``has_calendar_event``);
* ``null`` lists (``recordings``) become empty lists; absent optional keys
  (``available_slots`` when a slot has no limit) become ``None``;
* lone surrogates (JSON ``"\ud83d"`` without its pair), which no UTF-8 text can hold, become
  U+FFFD here, at the edge — otherwise saving the snapshot and writing the feed fail on every
  poll after one person typed half an emoji.

The models are frozen plain data so the pure core (``bridge.mapping``, planners) can hash and
compare them freely; their nested lists are tuples, so an object the poller hands to two polls
(``bridge.canvas.poller.ParsedPages``: an unchanged page's objects are reused) cannot be changed
through either. (``Conference.user_settings`` stays a dict: nothing reads it.)
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (dict keys and values, list items,
    all the way down) replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [valid_text(v) for v in value]
    if isinstance(value, dict):
        return {valid_text(k): valid_text(v) for k, v in value.items()}
    return value


def has_lone_surrogate(value: Any) -> bool:
    """Whether any string in ``value`` holds a lone surrogate: one ``json.dumps`` and one
    UTF-8 encode, both in C — a few times cheaper than walking the tree in Python."""
    try:
        json.dumps(value, ensure_ascii=False, default=lambda _: "").encode()
    except UnicodeEncodeError:  # only a surrogate cannot be encoded
        return True
    except ValueError:  # a circular structure: let the walk decide
        return True
    return False


def to_utc(value: Any) -> Any:
    """Accept ISO 8601 strings, datetimes and integer epochs (s or ms); return aware UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not a time")
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > 10**11 else value
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z") or text.endswith("z"):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    raise ValueError(f"not a time: {value!r}")


def _none_to_empty(value: Any) -> Any:
    return [] if value is None else value


def _comma_list(value: Any) -> Any:
    """Canvas sends some code lists as one comma-joined string ("course_1,course_2")."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part for part in value.split(",") if part]
    return value


UtcDateTime = Annotated[datetime | None, BeforeValidator(to_utc)]
EmptyList = BeforeValidator(_none_to_empty)
CodeList = Annotated[tuple[str, ...], BeforeValidator(_comma_list)]


class CanvasModel(BaseModel):
    """Base for every Canvas object: ignore unknown keys, immutable, lax types."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        """Validate, first replacing lone surrogates anywhere in ``obj`` (one check for the
        whole tree: nested models are validated inside pydantic, not through here). JSON text
        needs no such step: ``model_validate_json`` refuses a lone surrogate escape outright."""
        if has_lone_surrogate(obj):
            obj = valid_text(obj)
        return super().model_validate(obj, **kwargs)


# --- Users and groups -----------------------------------------------------------------------


class User(CanvasModel):
    """A Canvas user as embedded in reservations and participant lists (``user_json``)."""

    id: int
    name: str = ""
    sortable_name: str | None = None
    short_name: str | None = None
    login_id: str | None = None
    email: str | None = None
    created_at: UtcDateTime = None


class Profile(CanvasModel):
    """``GET /api/v1/users/self``: who a token belongs to."""

    id: int
    name: str = ""
    short_name: str | None = None
    sortable_name: str | None = None
    primary_email: str | None = None
    login_id: str | None = None
    time_zone: str | None = None
    locale: str | None = None


class Group(CanvasModel):
    """A student group (``group_json``), as listed by appointment group participants."""

    id: int
    name: str = ""
    group_category_id: int | None = None
    members_count: int | None = None
    users: Annotated[tuple[User, ...], EmptyList] = ()


# --- Conferences ----------------------------------------------------------------------------


class PlaybackFormat(CanvasModel):
    """One BigBlueButton playback format of a recording."""

    type: str | None = None
    url: str | None = None
    length: int | str | None = None
    translated_type: str | None = None
    show_to_students: bool | None = None


class Recording(CanvasModel):
    """A conference recording: documented shape or BigBlueButton's (integer ``created_at``)."""

    recording_id: str | None = None
    title: str = ""
    duration_minutes: int | None = None
    playback_url: str | None = None
    playback_formats: Annotated[tuple[PlaybackFormat, ...], EmptyList] = ()
    created_at: UtcDateTime = None
    updated_at: UtcDateTime = None

    @field_validator("recording_id", mode="before")
    @classmethod
    def _id_to_str(cls, value: Any) -> Any:
        return None if value is None else str(value)

    @property
    def link(self) -> str | None:
        """The best URL to watch it: ``playback_url``, else the first playback format's."""
        if self.playback_url:
            return self.playback_url
        for fmt in self.playback_formats:
            if fmt.url:
                return fmt.url
        return None


class Conference(CanvasModel):
    """A web conference (``GET /api/v1/conferences``, per course, per group)."""

    id: int
    title: str = ""
    conference_type: str | None = None
    conference_key: str | None = None
    description: str | None = None
    duration: float | None = None  # minutes; None for long-running conferences
    started_at: UtcDateTime = None
    ended_at: UtcDateTime = None
    start_at: UtcDateTime = None  # scheduled start (newer Canvas)
    end_at: UtcDateTime = None
    users: Annotated[tuple[int, ...], EmptyList] = ()
    invitees: Annotated[tuple[int, ...], EmptyList] = ()
    attendees: Annotated[tuple[int, ...], EmptyList] = ()
    has_advanced_settings: bool = False
    long_running: bool = False
    has_calendar_event: bool = False
    user_settings: Annotated[dict[str, Any], BeforeValidator(lambda v: v or {})] = Field(
        default_factory=dict
    )
    recordings: Annotated[tuple[Recording, ...], EmptyList] = ()
    url: str | None = None
    join_url: str | None = None
    context_type: str | None = None
    context_id: int | None = None

    @property
    def context_code(self) -> str | None:
        """``course_12`` / ``group_3``, as Canvas names contexts."""
        if self.context_type and self.context_id is not None:
            return f"{self.context_type.lower()}_{self.context_id}"
        return None


# --- Calendar events: slots and reservations ------------------------------------------------


class CalendarEvent(CanvasModel):
    """A Canvas calendar event: an appointment slot, a reservation, or a plain event.

    A *slot* has ``appointment_group_id`` set and ``parent_event_id`` null; a *reservation*
    (child event) has ``parent_event_id`` = its slot's id.
    """

    id: int
    title: str = ""
    description: str | None = None
    start_at: UtcDateTime = None
    end_at: UtcDateTime = None
    all_day: bool = False
    all_day_date: date | None = None
    workflow_state: str | None = None
    comments: str | None = None
    location_name: str | None = None
    location_address: str | None = None
    context_code: str | None = None
    context_name: str | None = None
    effective_context_code: str | None = None
    all_context_codes: CodeList = ()
    parent_event_id: int | None = None
    hidden: bool = False
    appointment_group_id: int | None = None
    appointment_group_url: str | None = None
    can_manage_appointment_group: bool | None = None
    participant_type: str | None = None
    participants_per_appointment: int | None = None
    available_slots: int | None = None
    reserve_url: str | None = None
    reserved: bool | None = None
    reserve_comments: str | None = None
    child_events_count: int | None = None
    child_events: tuple[CalendarEvent, ...] | None = None
    own_reservation: bool | None = None
    user: User | None = None
    group: Group | None = None
    url: str | None = None
    html_url: str | None = None
    created_at: UtcDateTime = None
    updated_at: UtcDateTime = None

    @field_validator("all_day_date", mode="before")
    @classmethod
    def _blank_date(cls, value: Any) -> Any:
        return None if value == "" else value


class ReservedTime(CanvasModel):
    """One of the viewer's reservations in ``reserved_times``; ``id`` is the reservation id."""

    id: int
    start_at: UtcDateTime = None
    end_at: UtcDateTime = None


class AppointmentGroup(CanvasModel):
    """A Scheduler appointment group, with whatever ``include[]`` asked for."""

    id: int
    title: str = ""
    description: str | None = None
    start_at: UtcDateTime = None
    end_at: UtcDateTime = None
    location_name: str | None = None
    location_address: str | None = None
    participant_count: int | None = None
    reserved_times: Annotated[tuple[ReservedTime, ...], EmptyList] = ()
    context_codes: Annotated[tuple[str, ...], EmptyList] = ()
    all_context_codes: Annotated[tuple[str, ...], EmptyList] = ()
    sub_context_codes: Annotated[tuple[str, ...], EmptyList] = ()
    workflow_state: str | None = None
    requiring_action: bool | None = None
    appointments_count: int | None = None
    appointments: Annotated[tuple[CalendarEvent, ...], EmptyList] = ()
    new_appointments: Annotated[tuple[CalendarEvent, ...], EmptyList] = ()
    max_appointments_per_participant: int | None = None
    min_appointments_per_participant: int | None = None
    participants_per_appointment: int | None = None
    participant_visibility: str | None = None
    participant_type: str | None = None
    url: str | None = None
    html_url: str | None = None
    created_at: UtcDateTime = None
    updated_at: UtcDateTime = None

    @field_validator("sub_context_codes", "context_codes", mode="before")
    @classmethod
    def _codes_to_str(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) for v in value]
        return value


# --- What one poll saw ----------------------------------------------------------------------


class AccountSnapshot(CanvasModel):
    """Everything one poll of one Canvas account saw: the input of the calendar mapping.

    ``canvas_host`` (e.g. ``canvas.example.edu``) makes UIDs unique across Canvas instances.
    ``reservable`` holds appointment groups of scope ``reservable`` (with ``reserved_times``
    and ``appointments``); ``manageable`` those of scope ``manageable`` (with ``appointments``
    and ``child_events``). ``fetched_at`` is when the poll finished.
    """

    canvas_host: str
    user: Profile
    conferences: list[Conference] = Field(default_factory=list)
    reservable: list[AppointmentGroup] = Field(default_factory=list)
    manageable: list[AppointmentGroup] = Field(default_factory=list)
    fetched_at: datetime

    @field_validator("fetched_at", mode="before")
    @classmethod
    def _fetched_utc(cls, value: Any) -> Any:
        return to_utc(value)
