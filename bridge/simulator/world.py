"""The simulated Canvas: its data, its clock, its faults and its request statistics.

Everything lives in memory behind one lock, because the ASGI server runs in a thread while
tests and benches poke the world directly. Ids are allocated from one counter per kind, so a
world built the same way always has the same ids.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from bridge.simulator.grants import OAuthRegistry

_ID = re.compile(r"/\d+")

Role = Literal["student", "teacher", "ta"]


class Clock:
    """A settable clock; by default it follows real time from the moment it was set."""

    def __init__(self, now: datetime | None = None) -> None:
        self._offset = timedelta(0)
        self._frozen: datetime | None = None  # see freeze()
        if now is not None:
            self.set(now)

    def now(self) -> datetime:
        if self._frozen is not None:
            return self._frozen
        return (datetime.now(UTC) + self._offset).replace(microsecond=0)

    def set(self, now: datetime) -> None:
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        self._offset = now - datetime.now(UTC)
        if self._frozen is not None:
            self._frozen = now.replace(microsecond=0)

    def advance(self, seconds: float) -> None:
        self._offset += timedelta(seconds=seconds)
        if self._frozen is not None:
            self._frozen = (self._frozen + timedelta(seconds=seconds)).replace(microsecond=0)

    def freeze(self) -> None:
        """Stop following real time: ``now()`` moves only by :meth:`set` and :meth:`advance`
        (a bench's world then answers the same from one cycle to the next)."""
        self._frozen = self.now()


@dataclass
class SimUser:
    id: int
    name: str
    token: str
    login_id: str
    time_zone: str = "UTC"
    token_state: Literal["active", "revoked", "expired"] = "active"

    @property
    def sortable_name(self) -> str:
        parts = self.name.split()
        return f"{parts[-1]}, {' '.join(parts[:-1])}" if len(parts) > 1 else self.name

    @property
    def short_name(self) -> str:
        return self.name


@dataclass
class Course:
    id: int
    name: str
    course_code: str
    conferences_enabled: bool = True
    concluded: bool = False
    roles: dict[int, Role] = field(default_factory=dict)  # user id -> role

    @property
    def code(self) -> str:
        return f"course_{self.id}"


@dataclass
class StudentGroup:
    id: int
    name: str
    course_id: int
    category_id: int
    members: list[int] = field(default_factory=list)


@dataclass
class SimRecording:
    recording_id: str
    title: str
    duration_minutes: int
    created_at_ms: int
    url: str


@dataclass
class SimConference:
    id: int
    context_type: Literal["Course", "Group"]
    context_id: int
    title: str
    conference_type: str = "BigBlueButton"
    description: str = ""
    duration: int | None = 60
    started_at: datetime | None = None
    ended_at: datetime | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    participants: dict[int, str] = field(default_factory=dict)  # user id -> invitee/attendee
    recordings: list[SimRecording] = field(default_factory=list)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class SimAppointmentGroup:
    id: int
    title: str
    context_codes: list[str]
    description: str = ""
    location_name: str = ""
    location_address: str = ""
    sub_context_codes: list[str] = field(default_factory=list)
    workflow_state: Literal["pending", "active", "deleted"] = "pending"
    participants_per_appointment: int | None = None
    min_appointments_per_participant: int | None = None
    max_appointments_per_participant: int | None = None
    participant_visibility: Literal["private", "protected"] = "private"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def participant_type(self) -> Literal["User", "Group"]:
        if any(code.startswith("group_category_") for code in self.sub_context_codes):
            return "Group"
        return "User"

    @property
    def group_category_id(self) -> int | None:
        for code in self.sub_context_codes:
            if code.startswith("group_category_"):
                return int(code.removeprefix("group_category_"))
        return None


@dataclass
class Slot:
    id: int
    group_id: int
    start_at: datetime
    end_at: datetime
    participants_per_appointment: int | None = None  # per-slot override
    workflow_state: Literal["active", "locked", "deleted"] = "active"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Reservation:
    id: int
    slot_id: int
    participant_type: Literal["User", "Group"]
    participant_id: int
    made_by: int
    comments: str = ""
    workflow_state: Literal["locked", "deleted"] = "locked"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


FaultKind = Literal[
    "status", "delay", "throttle403", "throttle429", "malformed", "html", "truncated", "reset"
]


@dataclass
class Fault:
    """An injected fault: applies to requests whose path matches ``path`` (a regex)."""

    kind: FaultKind
    path: str = ".*"
    count: int | None = 1  # None: until cleared
    status: int = 503
    delay: float = 0.0
    method: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return re.search(self.path, path) is not None


class Faults:
    """Faults waiting to be served, consumed first-added first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, kind: FaultKind, path: str = ".*", count: int | None = 1, **kw: Any) -> Fault:
        fault = Fault(kind=kind, path=path, count=count, **kw)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            self._faults.remove(fault)
                    return fault
        return None


class Stats:
    """Requests served, by ``METHOD path``, by status and by the user whose token was used;
    and the last :data:`LOG_SIZE` requests in order (when, whose, what): what benches and the
    cluster test count."""

    LOG_SIZE = 200_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.by_scope: Counter[str] = Counter()  # Canvas's scope name of each API route served
        self.by_user: Counter[int] = Counter()
        self.log: deque[tuple[float, int | None, str, str, int]] = deque(maxlen=self.LOG_SIZE)
        self.total = 0

    def record(
        self,
        method: str,
        path: str,
        status: int,
        scope: str | None = None,
        user_id: int | None = None,
    ) -> None:
        with self._lock:
            self.total += 1
            self.by_route[f"{method} {_ID.sub('/:id', path)}"] += 1
            self.by_status[status] += 1
            if scope is not None:
                self.by_scope[scope] += 1
            if user_id is not None:
                self.by_user[user_id] += 1
            self.log.append((time.time(), user_id, method, path, status))

    def reset(self) -> None:
        with self._lock:
            self.by_route.clear()
            self.by_status.clear()
            self.by_scope.clear()
            self.by_user.clear()
            self.log.clear()
            self.total = 0

    def as_dict(self) -> dict[str, object]:
        with self._lock:
            return {
                "total": self.total,
                "by_route": dict(self.by_route),
                "by_status": {str(k): v for k, v in self.by_status.items()},
                "by_scope": dict(self.by_scope),
                "by_user": {str(k): v for k, v in self.by_user.items()},
            }

    def requests(self) -> list[dict[str, object]]:
        """The request log, oldest first: time (Unix seconds), user id, method, path, status."""
        with self._lock:
            return [
                {"at": at, "user": user, "method": method, "path": path, "status": status}
                for at, user, method, path, status in self.log
            ]


@dataclass(frozen=True)
class Answer:
    """A handler's answer as sent: what :class:`AnswerCache` keeps."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]


class AnswerCache:
    """The answers of GET handlers, per user and URL, for a world whose data changes only
    through the simulator's own requests (benches: ``enabled`` is off by default). An answer
    is served again while the world's clock reads the same second and nothing was written:
    every API request that is not a GET, every ``/_sim/`` write that can change an answer
    (clock, tokens, OAuth) and :meth:`World.changed` empty it (faults, throttle and request
    statistics do not: the gate applies them to every request). Code that changes the world's
    objects directly must call :meth:`World.changed`."""

    def __init__(self) -> None:
        self.enabled = False
        self._at: datetime | None = None
        self._answers: dict[tuple[int, str], Answer] = {}
        self.hits = 0

    def get(self, user_id: int, url: str, now: datetime) -> Answer | None:
        if not self.enabled:
            return None
        if now != self._at:
            self._answers.clear()
            self._at = now
            return None
        answer = self._answers.get((user_id, url))
        if answer is not None:
            self.hits += 1
        return answer

    def put(self, user_id: int, url: str, now: datetime, answer: Answer) -> None:
        if self.enabled and now == self._at:
            self._answers[(user_id, url)] = answer

    def clear(self) -> None:
        self._answers.clear()


@dataclass
class Throttle:
    """Canvas's leaky bucket per token (§5): ``hwm`` units, leaking ``outflow`` per second."""

    hwm: float = 600.0
    outflow: float = 10.0
    cost: float = 1.0  # cost charged per request (real Canvas: CPU + DB seconds)
    mode: Literal[403, 429] = 403
    levels: dict[str, tuple[float, float]] = field(default_factory=dict)  # token -> (level, t)

    def charge(self, token: str, now: float) -> tuple[bool, float]:
        """Charge one request; return (allowed, remaining)."""
        level, last = self.levels.get(token, (0.0, now))
        level = max(0.0, level - (now - last) * self.outflow)
        if level >= self.hwm:
            self.levels[token] = (level, now)
            return False, 0.0
        level += self.cost
        self.levels[token] = (level, now)
        return True, max(0.0, self.hwm - level)


class World:
    """All the simulated Canvas's data, plus clock, faults, stats and throttle."""

    def __init__(self, now: datetime | None = None, host: str = "canvas.sim") -> None:
        self.lock = threading.RLock()
        self.clock = Clock(now)
        self.faults = Faults()
        self.stats = Stats()
        self.throttle = Throttle()
        self.oauth = OAuthRegistry()  # developer keys and what they issued
        self.answers = AnswerCache()
        self._by_token: dict[str, SimUser] = {}  # checked on every use: see user_by_token
        self._by_member: tuple[dict[int, list[SimConference]], dict[int, list[int]]] | None = None
        self.host = host
        self._ids = {k: itertools.count(1) for k in ("user", "course", "group", "conf", "ag")}
        self._event_ids = itertools.count(1001)  # slots and reservations share one sequence
        self.users: dict[int, SimUser] = {}
        self.courses: dict[int, Course] = {}
        self.groups: dict[int, StudentGroup] = {}
        self.conferences: dict[int, SimConference] = {}
        self.appointment_groups: dict[int, SimAppointmentGroup] = {}
        self.slots: dict[int, Slot] = {}
        self.reservations: dict[int, Reservation] = {}
        # Indexes, so a request costs what it returns, not the size of the world (nothing is
        # ever removed: deletion is a workflow_state; ids and context codes never change).
        self.slots_by_group: dict[int, list[Slot]] = {}
        self.reservations_by_slot: dict[int, list[Reservation]] = {}
        self.groups_by_course: dict[int, list[SimAppointmentGroup]] = {}

    # --- building ---------------------------------------------------------------------------

    def add_user(self, name: str, token: str, time_zone: str = "UTC") -> SimUser:
        uid = next(self._ids["user"])
        login = name.lower().replace(" ", ".")
        user = SimUser(uid, name, token, login_id=login, time_zone=time_zone)
        self.users[uid] = user
        return user

    def add_course(self, name: str, code: str, **kw: Any) -> Course:
        course = Course(next(self._ids["course"]), name, code, **kw)
        self.courses[course.id] = course
        self.changed()
        return course

    def enroll(self, course: Course, user: SimUser, role: Role = "student") -> None:
        course.roles[user.id] = role
        self.changed()

    def add_group(
        self, course: Course, name: str, category_id: int, members: list[int]
    ) -> StudentGroup:
        group = StudentGroup(next(self._ids["group"]), name, course.id, category_id, members)
        self.groups[group.id] = group
        return group

    def add_conference(
        self, context: Course | StudentGroup, title: str, **kw: Any
    ) -> SimConference:
        ctype: Literal["Course", "Group"] = "Course" if isinstance(context, Course) else "Group"
        kw.setdefault("created_at", self.clock.now())
        conf = SimConference(next(self._ids["conf"]), ctype, context.id, title, **kw)
        self.conferences[conf.id] = conf
        self.changed()
        return conf

    def add_appointment_group(
        self, title: str, context_codes: list[str], **kw: Any
    ) -> SimAppointmentGroup:
        now = self.clock.now()
        kw.setdefault("created_at", now)
        kw.setdefault("updated_at", now)
        group = SimAppointmentGroup(next(self._ids["ag"]), title, context_codes, **kw)
        self.appointment_groups[group.id] = group
        for code in dict.fromkeys(context_codes):
            kind, _, ident = code.partition("_")
            if kind == "course" and ident.isdigit():
                self.groups_by_course.setdefault(int(ident), []).append(group)
        return group

    def add_slot(
        self, group: SimAppointmentGroup, start: datetime, end: datetime, **kw: Any
    ) -> Slot:
        now = self.clock.now()
        slot = Slot(
            next(self._event_ids), group.id, start, end, created_at=now, updated_at=now, **kw
        )
        self.slots[slot.id] = slot
        self.slots_by_group.setdefault(group.id, []).append(slot)
        return slot

    def add_reservation(self, reservation: Reservation) -> None:
        self.reservations[reservation.id] = reservation
        self.reservations_by_slot.setdefault(reservation.slot_id, []).append(reservation)

    def new_event_id(self) -> int:
        return next(self._event_ids)

    # --- lookups ----------------------------------------------------------------------------

    def changed(self) -> None:
        """Say the world's data changed behind the simulator's back (cached answers and the
        indexes kept with them go)."""
        self.answers.clear()
        self._by_member = None

    def _members(self) -> tuple[dict[int, list[SimConference]], dict[int, list[int]]] | None:
        """Per user id: the conferences they take part in and the ids of their courses, in
        the world's order. Kept only while answers are (``answers.enabled``: the world then
        changes only through requests or with :meth:`changed`); None otherwise."""
        if not self.answers.enabled:
            return None
        if self._by_member is None:
            conferences: dict[int, list[SimConference]] = {}
            for conference in self.conferences.values():
                for user_id in conference.participants:
                    conferences.setdefault(user_id, []).append(conference)
            courses: dict[int, list[int]] = {}
            for course_id, course in self.courses.items():
                for user_id in course.roles:
                    courses.setdefault(user_id, []).append(course_id)
            self._by_member = (conferences, courses)
        return self._by_member

    def conferences_of(self, user: SimUser) -> list[SimConference]:
        """The conferences ``user`` takes part in, in the world's order."""
        index = self._members()
        if index is not None:
            return index[0].get(user.id, [])
        return [c for c in self.conferences.values() if user.id in c.participants]

    def user_by_token(self, token: str) -> SimUser | None:
        """The first user (in order of creation) holding ``token``. An index, rebuilt when a
        user it names no longer holds the token or is gone, or when the token is not in it:
        tests change users and tokens directly."""
        user = self._by_token.get(token)
        if user is not None and user.token == token and self.users.get(user.id) is user:
            return user
        self._by_token = {}
        for candidate in self.users.values():
            self._by_token.setdefault(candidate.token, candidate)
        return self._by_token.get(token)

    def revoke_token(self, token: str, state: Literal["revoked", "expired"] = "revoked") -> None:
        user = self.user_by_token(token)
        if user is not None:
            user.token_state = state

    def role_in(self, user: SimUser, course_id: int) -> Role | None:
        course = self.courses.get(course_id)
        return course.roles.get(user.id) if course else None

    def courses_of(self, user: SimUser) -> list[int]:
        """Ids of the courses the user has any role in."""
        index = self._members()
        if index is not None:
            return index[1].get(user.id, [])
        return [cid for cid, course in self.courses.items() if user.id in course.roles]

    def user_groups(self, user: SimUser) -> list[StudentGroup]:
        return [g for g in self.groups.values() if user.id in g.members]
