"""What a request to the simulator costs: benches must measure calbridge, not the simulator."""

from __future__ import annotations

import socket
import time

import httpx

from bridge.simulator.app import create_app
from bridge.simulator.sample import bulk_world
from bridge.simulator.server import serve_in_thread
from bridge.simulator.world import World


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while True:
        data += sock.recv(65536)
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(body) >= length:
                return data


def test_a_kept_alive_connection_does_not_wait_for_delayed_acks() -> None:
    """Each answer goes out as headers then body; with Nagle's algorithm on, the body waited
    for the client's delayed ACK and every request after a connection's first took 40-44 ms."""
    world, tokens = bulk_world(users=1, groups_per_user=1, conferences_per_user=1)
    request = (
        f"GET /api/v1/users/self HTTP/1.1\r\nHost: sim\r\nAuthorization: Bearer {tokens[0]}\r\n\r\n"
    ).encode()
    with (
        serve_in_thread(create_app(world)) as server,
        socket.create_connection((server.host, server.port)) as sock,
    ):
        times = []
        for _ in range(6):
            start = time.perf_counter()
            sock.sendall(request)
            assert _answer(sock).startswith(b"HTTP/1.1 200")
            times.append(time.perf_counter() - start)
    assert min(times[1:]) < 0.02, times


LIST = "/api/v1/appointment_groups?scope=reservable&include[]=appointments&include[]=reserved_times"


def _cached_world() -> tuple[World, list[str]]:
    world, tokens = bulk_world(users=2, groups_per_user=2, conferences_per_user=1)
    world.clock.freeze()
    world.answers.enabled = True
    return world, tokens


def test_kept_answers_are_the_same_answers() -> None:
    """A bench's simulator serves a user's GET again from what it answered (the same status,
    body and headers) while nothing is written; other users and URLs are answered afresh."""
    world, tokens = _cached_world()
    with serve_in_thread(create_app(world, control=True)) as server:
        first, second = (
            httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {t}"})
            for t in tokens
        )
        answers = [first.get(LIST), first.get(LIST)]
        assert world.answers.hits == 1
        assert answers[0].content == answers[1].content and answers[0].status_code == 200
        for name in ("link", "content-type", "content-length"):
            assert answers[0].headers[name] == answers[1].headers[name]
        assert answers[1].headers["x-rate-limit-remaining"]  # the gate still runs
        other = second.get(LIST)
        assert world.answers.hits == 1 and other.status_code == 200
        assert first.get("/api/v1/conferences").content != answers[0].content
        assert world.stats.total == 4
        # a bench resets the statistics between its cycles: what Canvas answers is the same
        assert httpx.delete(f"{server.url}/_sim/stats").status_code == 200
        assert first.get(LIST).content == answers[0].content and world.answers.hits == 2


def test_a_write_is_seen_at_once_with_answers_kept() -> None:
    """A reservation made over HTTP, a clock moved over /_sim/ and a change made directly
    (followed by ``world.changed()``) all show in the next answer."""
    world, tokens = _cached_world()
    with serve_in_thread(create_app(world, control=True)) as server:
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tokens[1]}"})
        before = client.get(LIST).content
        open_slot = next(
            s for s in world.slots.values() if not world.reservations_by_slot.get(s.id)
        )
        assert (
            client.post(f"/api/v1/calendar_events/{open_slot.id}/reservations").status_code == 200
        )
        booked = client.get(LIST).content
        assert booked != before
        group = world.appointment_groups[open_slot.group_id]
        with world.lock:
            group.title = "Renamed"
            world.changed()
        assert b"Renamed" in client.get(LIST).content
        assert (
            httpx.post(f"{server.url}/_sim/clock", json={"advance": 120 * 86400}).status_code == 200
        )
        assert client.get(LIST).json() == []  # every group has ended
        assert world.answers.hits == 0


def test_a_token_changed_directly_is_seen_at_once() -> None:
    """Tokens are looked up through an index: a token given to another user, or taken away,
    directly on the world's objects, answers as the world says at the next request."""
    world, tokens = bulk_world(users=2, groups_per_user=1, conferences_per_user=1)
    with serve_in_thread(create_app(world)) as server:

        def who(token: str) -> int | None:
            r = httpx.get(
                f"{server.url}/api/v1/users/self", headers={"Authorization": f"Bearer {token}"}
            )
            return r.json()["id"] if r.status_code == 200 else None

        first = world.user_by_token(tokens[0])
        assert first is not None and who(tokens[0]) == first.id
        first.token = "moved"
        assert who(tokens[0]) is None and who("moved") == first.id
        del world.users[first.id]
        assert who("moved") is None


def test_conferences_and_courses_are_indexed_only_while_answers_are_kept() -> None:
    """With answers kept, a user's conferences and courses come from an index: a conference
    or an enrolment added through the world's own methods shows at once, and so does a
    participant removed directly and announced with ``world.changed()``."""
    world, tokens = _cached_world()
    student = world.user_by_token(tokens[0])
    assert student is not None
    with serve_in_thread(create_app(world, control=True)) as server:
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tokens[0]}"})

        def titles() -> list[str]:
            return sorted(
                c["title"] for c in client.get("/api/v1/conferences").json()["conferences"]
            )

        assert titles() == ["Conference 1"]
        course = world.add_course("Another course", "A2")
        world.enroll(course, student)
        assert titles() == ["Conference 1"]  # the index is built again, with the new course
        added = world.add_conference(course, "Added", participants={student.id: "invitee"})
        assert titles() == ["Added", "Conference 1"]
        with world.lock:
            del added.participants[student.id]
            world.changed()
        assert titles() == ["Conference 1"]
        assert course.id in world.courses_of(student)
