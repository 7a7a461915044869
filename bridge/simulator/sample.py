"""Deterministic sample data: what ``calbridge demo`` shows and most tests start from.

Times are relative to ``now`` (rounded down to the hour), so the sample always has a live
conference, upcoming slots and past ones. The same ``now`` always gives the same world.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.simulator import rules
from bridge.simulator.world import SimRecording, World

SAMPLE_TOKENS = {
    "alice": "sim-alice-student-token",
    "bob": "sim-bob-student-token",
    "carol": "sim-carol-student-token",
    "teacher": "sim-teacher-token",
    "ta": "sim-ta-token",
}
SAMPLE_HOST = "canvas.sim"
# The sample developer key (Canvas-style numeric client id). Its redirect URIs allow any port on
# the loopback names, so a calbridge started anywhere locally can sign in against it.
SAMPLE_CLIENT_ID = "170000000000001"
SAMPLE_CLIENT_SECRET = "sim-client-secret"
SAMPLE_REDIRECT_URIS = ("http://127.0.0.1", "http://localhost")


def _hour(now: datetime | None) -> datetime:
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def sample_world(now: datetime | None = None) -> World:
    """Two courses, a teacher, a TA, three students, conferences and bookings in every state."""
    t = _hour(now)
    world = World(now=t, host=SAMPLE_HOST)
    world.oauth.add_key(SAMPLE_CLIENT_ID, SAMPLE_CLIENT_SECRET, list(SAMPLE_REDIRECT_URIS))
    teacher = world.add_user("Grace Hopper", SAMPLE_TOKENS["teacher"], "America/New_York")
    ta = world.add_user("Alan Turing", SAMPLE_TOKENS["ta"])
    alice = world.add_user("Alice Liddell", SAMPLE_TOKENS["alice"], "Europe/Berlin")
    bob = world.add_user("Bob Dylan", SAMPLE_TOKENS["bob"])
    carol = world.add_user("Carol Danvers", SAMPLE_TOKENS["carol"])
    cs = world.add_course("Computer Science 101", "CS101")
    hist = world.add_course("History of Computing", "HIST200")
    for course in (cs, hist):
        world.enroll(course, teacher, "teacher")
        for student in (alice, bob, carol):
            world.enroll(course, student, "student")
    world.enroll(cs, ta, "ta")
    team = world.add_group(cs, "Project Team Ada", category_id=7, members=[alice.id, bob.id])
    world.add_group(cs, "Project Team Babbage", category_id=7, members=[carol.id])
    everyone = {teacher.id: "invitee", alice.id: "invitee", bob.id: "invitee", carol.id: "invitee"}

    def conf_at(offset: timedelta) -> datetime:
        return world.clock.now() + offset

    world.add_conference(
        cs,
        "Lecture 5: Recursion",
        description="<p>Bring <b>questions</b> about recursion.</p>",
        start_at=t + timedelta(days=2, hours=14),
        end_at=t + timedelta(days=2, hours=15),
        participants=dict(everyone),
        created_at=conf_at(-timedelta(days=3)),
    )
    world.add_conference(
        cs,
        "Office hour (live now)",
        duration=90,
        started_at=t - timedelta(minutes=20),
        participants={teacher.id: "attendee", alice.id: "attendee", bob.id: "invitee"},
        created_at=conf_at(-timedelta(days=2)),
    )
    world.add_conference(
        hist,
        "Guest talk: ENIAC",
        duration=60,
        started_at=t - timedelta(days=3),
        ended_at=t - timedelta(days=3) + timedelta(minutes=58),
        participants=dict(everyone),
        recordings=[
            SimRecording(
                "rec-eniac-1",
                "Guest talk: ENIAC",
                58,
                int((t - timedelta(days=3)).timestamp() * 1000),
                f"https://{SAMPLE_HOST}/playback/rec-eniac-1",
            )
        ],
        created_at=conf_at(-timedelta(days=10)),
    )
    world.add_conference(
        hist,
        "Study room (always open)",
        duration=None,
        started_at=t - timedelta(days=5),
        participants=dict(everyone),
        created_at=conf_at(-timedelta(days=9)),
    )
    world.add_conference(
        cs,
        "Unscheduled Q&A",
        duration=45,
        participants=dict(everyone),
        created_at=conf_at(-timedelta(days=1)),
    )
    world.add_conference(
        team,
        "Team Ada stand-up",
        duration=15,
        start_at=t + timedelta(days=1, hours=9),
        participants={alice.id: "invitee", bob.id: "invitee"},
        created_at=conf_at(-timedelta(hours=5)),
    )

    office = world.add_appointment_group(
        "Office hours",
        [cs.code],
        description="<p>Come with <em>one</em> question &amp; your code.</p>",
        location_name="Room 101",
        location_address="Science Hall",
        workflow_state="active",
        participants_per_appointment=1,
        max_appointments_per_participant=1,
        min_appointments_per_participant=1,
    )
    day = t.replace(hour=15) + timedelta(days=3)
    office_slots = [
        world.add_slot(
            office, day + timedelta(minutes=20 * i), day + timedelta(minutes=20 * (i + 1))
        )
        for i in range(4)
    ]
    past = world.add_slot(
        office, t - timedelta(days=2), t - timedelta(days=2) + timedelta(minutes=20)
    )
    review = world.add_appointment_group(
        "Project review",
        [cs.code, hist.code],
        description="Review of your final project.",
        location_name="Zoom",
        workflow_state="active",
        participants_per_appointment=3,
        participant_visibility="protected",
    )
    rday = t.replace(hour=10) + timedelta(days=5)
    review_slots = [
        world.add_slot(review, rday + timedelta(hours=i), rday + timedelta(hours=i, minutes=30))
        for i in range(3)
    ]
    world.add_slot(
        review, rday + timedelta(days=1), rday + timedelta(days=1)
    )  # zero-length, as in the API doc
    teams = world.add_appointment_group(
        "Team check-in",
        [cs.code],
        sub_context_codes=["group_category_7"],
        workflow_state="active",
        participants_per_appointment=1,
        location_name="Lab 3",
    )
    tday = t.replace(hour=13) + timedelta(days=4)
    team_slots = [
        world.add_slot(
            teams, tday + timedelta(minutes=30 * i), tday + timedelta(minutes=30 * (i + 1))
        )
        for i in range(2)
    ]
    pending = world.add_appointment_group(
        "Exam viewing (draft)", [hist.code], participants_per_appointment=2
    )
    world.add_slot(pending, t + timedelta(days=8), t + timedelta(days=8, minutes=30))
    world.add_appointment_group("Undated draft", [hist.code])

    def book(user_id: int, slot_id: int, comments: str = "") -> None:
        rules.reserve(
            world,
            world.users[user_id],
            slot_id,
            participant_id=None,
            comments=comments,
            cancel_existing=False,
        )

    book(alice.id, office_slots[1].id, "Question about recursion depth")
    book(bob.id, office_slots[2].id)
    book(alice.id, review_slots[0].id, "Our team's repo is ada/final")
    book(carol.id, review_slots[0].id)
    book(alice.id, team_slots[0].id, "Team Ada")
    world.clock.set(t - timedelta(days=3))  # book the past slot while it was in the future
    book(carol.id, past.id, "Missed lecture")
    world.clock.set(t)
    return world


def bulk_world(
    users: int = 1,
    groups_per_user: int = 250,
    conferences_per_user: int = 35,
    now: datetime | None = None,
) -> tuple[World, list[str]]:
    """A large world for benches: every student sees the given numbers of groups and conferences.

    Students are spread over courses of 20; each course carries ``groups_per_user`` published
    appointment groups (two slots each, one reserved by the course's first student) and
    ``conferences_per_user`` conferences everyone in it participates in.
    """
    t = _hour(now)
    world = World(now=t, host=SAMPLE_HOST)
    teacher = world.add_user("Bulk Teacher", "bulk-teacher")
    tokens: list[str] = []
    per_course = 20
    for first in range(0, users, per_course):
        course = world.add_course(
            f"Bulk course {first // per_course + 1}", f"B{first // per_course + 1}"
        )
        world.enroll(course, teacher, "teacher")
        members = []
        for n in range(first, min(first + per_course, users)):
            token = f"bulk-student-{n + 1}"
            student = world.add_user(f"Student {n + 1:05d}", token)
            world.enroll(course, student, "student")
            members.append(student.id)
            tokens.append(token)
        participants = dict.fromkeys(members, "invitee")
        for c in range(conferences_per_user):
            world.add_conference(
                course,
                f"Conference {c + 1}",
                start_at=t + timedelta(days=c % 20, hours=9),
                end_at=t + timedelta(days=c % 20, hours=10),
                participants=dict(participants),
            )
        for g in range(groups_per_user):
            group = world.add_appointment_group(
                f"Slots {g + 1}",
                [course.code],
                workflow_state="active",
                participants_per_appointment=2,
                location_name="Online",
            )
            start = t + timedelta(days=1 + g % 30, hours=8 + g % 8)
            first_slot = world.add_slot(group, start, start + timedelta(minutes=15))
            world.add_slot(group, start + timedelta(minutes=15), start + timedelta(minutes=30))
            rules.reserve(
                world,
                world.users[members[0]],
                first_slot.id,
                participant_id=None,
                comments="",
                cancel_existing=False,
            )
    return world, tokens
