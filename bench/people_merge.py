"""The daemon's people merge (institution mode, every 2 s) when nobody changed, against the
same merge reading the people in full, as it did before the people's version existed (every
person, feed and calendar, and the counts; then the same settings handed back).

``python bench/people_merge.py [PEOPLE] [STATE_URL]`` (default 2000, a temporary SQLite; give
a ``postgresql+psycopg://`` URL of an empty database to measure PostgreSQL). The people are
connected through the state store, each with one feed. Printed: CPU milliseconds (median of
RUNS, ``time.process_time`` after ``gc.collect()``) of the merge with a full read (the
reference: the version it reads is made to move every time) and of an unchanged merge, and
their ratio. Before dividing it checks the work: the first merge holds every person's account,
both measured merges returned the very same settings; then that a change made through another
store is in the next merge.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bridge.config import load_config
from bridge.daemon.people import People
from bridge.model.tokens import TokenSet
from bridge.state import open_state
from bridge.state.vault import Vault, generate_key

HOST = "canvas.example.edu"
RUNS = 15


def cpu_ms(action: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        gc.collect()
        started = time.process_time()
        action()
        times.append(time.process_time() - started)
    return statistics.median(times) * 1000


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        url = sys.argv[2] if len(sys.argv) > 2 else f"sqlite:///{tmp}/state.sqlite3"
        key = generate_key()
        (Path(tmp) / "client.secret").write_text("bench-secret\n")
        (Path(tmp) / "state.keys").write_text(key + "\n")
        (Path(tmp) / "config.toml").write_text(
            f'[state]\nurl = "{url}"\nencryption_key_file = "{tmp}/state.keys"\n'
            f'[oauth]\ncanvas_url = "https://{HOST}"\nclient_id = "1"\n'
            f'client_secret_file = "{tmp}/client.secret"\n'
        )
        config = load_config(Path(tmp) / "config.toml")
        state = open_state(url, Vault([key], source="bench"))
        elsewhere = open_state(url, Vault([key], source="bench"))
        try:
            for user in range(1, count + 1):
                tokens = TokenSet(
                    access_token=f"token-{user}", refresh_token="r", expires_at=None,
                    user_id=user, user_name=f"Student {user}",
                )  # fmt: skip
                state.people.connect(HOST, tokens, default_include=["conferences"])
            people = People(state, config)
            first = people.merge(config)
            if len(first.people) != count or len(first.settings.accounts) != count:
                raise SystemExit(
                    f"expected {count} people and accounts: read {len(first.people)}, "
                    f"merged {len(first.settings.accounts)}"
                )
            version = state.people.version
            moving = itertools.count(10**9)
            state.people.version = lambda: next(moving)  # type: ignore[method-assign]
            full = cpu_ms(lambda: people.merge(config))
            if people.merge(config).settings is not first.settings:
                raise SystemExit("the merge reading everything built new settings")
            state.people.version = version  # type: ignore[method-assign]
            unchanged = cpu_ms(lambda: people.merge(config))
            if people.merge(config).settings is not first.settings:
                raise SystemExit("an unchanged merge built new settings")
            person = state.people.all()[0]
            feed = elsewhere.people.add_feed(person.id, ["reservations"])
            if feed.feed_id not in {f.id for f in people.merge(config).settings.feeds}:
                raise SystemExit("a feed added through another store is not in the next merge")
        finally:
            elsewhere.close()
            state.close()
    backend = url.split(":", 1)[0].split("+", 1)[0]
    print(f"{count} people on {backend}, CPU ms, median of {RUNS}:")
    print(f"  merge reading every person (before): {full:8.2f} ms")
    print(f"  unchanged merge (the version only):  {unchanged:8.2f} ms")
    print(f"  ratio: {unchanged / full:.3f}")


if __name__ == "__main__":
    main()
