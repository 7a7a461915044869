"""The Canvas simulator for benches, in a process of its own.

``python bench/canvas_sim.py USERS GROUPS CONFERENCES`` builds :func:`bulk_world`, serves it on
a free loopback port with the ``/_sim/`` control surface, prints one JSON line (``url``,
``tokens``, ``ids`` (each token's Canvas user id) and ``expected``: per user, the conferences and reservations the simulator holds
for them) and serves until its stdin closes. A bench that runs the simulator in a thread of
the measured process has the GIL charge the simulator's work to calbridge; this one does not.
Its clock is stopped at the world's start and its GET answers are kept (``World.answers``)
until a request writes: the same answers, at a fraction of the simulator's CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bridge.simulator.app import create_app
from bridge.simulator.sample import bulk_world
from bridge.simulator.server import serve_in_thread
from bridge.simulator.world import World


def expected_events(world: World, tokens: list[str]) -> list[int]:
    """Per token: conferences the user takes part in plus reservations the user holds."""
    per_user: Counter[int] = Counter()
    for conference in world.conferences.values():
        per_user.update(conference.participants.keys())
    for reservation in world.reservations.values():
        if reservation.workflow_state != "deleted" and reservation.participant_type == "User":
            per_user[reservation.participant_id] += 1
    ids = {user.token: user.id for user in world.users.values()}
    return [per_user[ids[token]] for token in tokens]


def main() -> None:
    users, groups, conferences = (int(a) for a in sys.argv[1:4])
    world, tokens = bulk_world(
        users=users, groups_per_user=groups, conferences_per_user=conferences
    )
    world.throttle.hwm = 1e9  # measure calbridge, not the simulated throttle
    # Measure calbridge, not the simulator: its clock stops (nothing the bench measures reads
    # it) and a user's GET answered once is served again until something is written.
    world.clock.freeze()
    world.answers.enabled = True
    with serve_in_thread(create_app(world, control=True)) as server:
        ids = {user.token: user.id for user in world.users.values()}
        line = {
            "url": server.url,
            "tokens": tokens,
            "ids": [ids[token] for token in tokens],
            "expected": expected_events(world, tokens),
        }
        print(json.dumps(line), flush=True)
        sys.stdin.read()  # until the bench closes our stdin (or exits)


class SimProcess:
    """The simulator started as a child process; ``with SimProcess(...) as sim``."""

    def __init__(self, users: int, groups: int, conferences: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(users), str(groups), str(conferences)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if not first:
            raise RuntimeError(f"the simulator did not start (exit {self.proc.wait()})")
        info: dict[str, Any] = json.loads(first)
        self.url: str = info["url"]
        self.tokens: list[str] = info["tokens"]
        self.expected: list[int] = info["expected"]
        self.ids: list[int] = info["ids"]

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    main()
