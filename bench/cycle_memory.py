"""Where the memory of ``bench/cycle.py``'s two cycles goes: RSS and Python allocations.

``python bench/cycle_memory.py [USERS]`` (default 2000) runs the same cold and unchanged cycles
as ``bench/cycle.py`` (same users, same simulator in its own process, the same checks of the
work: every answer a 200, every feed holding the simulator's events) and prints, after the
start (the simulator up, the settings built), after the cold cycle and after the unchanged one:
the process's RSS now and its peak (``VmRSS``/``VmHWM``), both per user since the start; what
the served feeds hold (bodies, gzipped bodies) and how many series the Prometheus registry
exposes.

``BENCH_TRACE=1`` also runs tracemalloc (slower, and it costs memory of its own: the RSS figures
of such a run are not the product's): the top allocations still alive after each cycle, by
file and line, in bytes per user, and the tracemalloc peak during the cold cycle.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path

from bridge import metrics
from bridge.daemon.cycle import Syncer
from bridge.state import open_state
from bridge.web.served import ServedFeeds

sys.path.insert(0, str(Path(__file__).parent))
from canvas_sim import SimProcess
from cycle import (
    CONFERENCES,
    GROUPS,
    CheckFailed,
    bench_settings,
    check,
    check_feeds,
    cycle,
    sim_stats,
)

TRACE = os.environ.get("BENCH_TRACE") == "1"
TOP = 25


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def series() -> int:
    return sum(len(m.samples) for m in metrics.REGISTRY.collect())


def report(label: str, users: int, start_kib: int, feeds: ServedFeeds, ids: list[str]) -> None:
    gc.collect()
    rss, hwm = status_kib("VmRSS"), status_kib("VmHWM")
    served = [f for f in (feeds.get(i) for i in ids) if f is not None]
    # the plain bytes held (small feeds: none; before they were held gzipped only: all)
    body = sum(len(getattr(f, "plain", f.body)) for f in served)
    gz = sum(len(f.gzip_body) for f in served)
    print(
        f"{label}: RSS {rss / 1024:.0f} MB (+{(rss - start_kib) / users:.1f} KiB/user), peak"
        f" {hwm / 1024:.0f} MB (+{(hwm - start_kib) / users:.1f} KiB/user); {len(served)} feeds"
        f" served: plain bodies held {body / users / 1024:.1f} KiB/user, gzip {gz / users / 1024:.1f}"
        f" KiB/user; Prometheus samples {series()}",
        flush=True,
    )


def short(filename: str) -> str:
    return filename.split("site-packages/")[-1].split("/wt/memory/")[-1]


def top(label: str, users: int, base: tracemalloc.Snapshot) -> None:
    now = tracemalloc.take_snapshot()
    stats = now.compare_to(base, "lineno")
    total = sum(s.size_diff for s in stats)
    print(f"  tracemalloc {label}: {total / users / 1024:.1f} KiB/user alive since the start")
    for stat in stats[:TOP]:
        frame = stat.traceback[0]
        print(
            f"    {stat.size_diff / users:>9.0f} B/user {stat.count_diff / users:>7.1f} obj/user"
            f"  {short(frame.filename)}:{frame.lineno}"
        )
    by_file = now.compare_to(base, "filename")
    print(f"  by file, {label}:")
    for stat in by_file[:TOP]:
        print(f"    {stat.size_diff / users:>9.0f} B/user  {short(stat.traceback[0].filename)}")


def run(users: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, SimProcess(users, GROUPS, CONFERENCES) as sim:
        for n, token in enumerate(sim.tokens):
            os.environ[f"BENCH_TOKEN_{n}"] = token
        settings = bench_settings(sim.url, users, tmp)
        state = open_state(settings.state.url or "")
        feeds = ServedFeeds()
        syncer = Syncer(settings, state, feeds)
        ids = [f"u{n}" for n in range(users)]
        gc.collect()
        start = status_kib("VmRSS")
        report("start", users, start, feeds, ids)

        async def both() -> None:
            sim_stats(sim.url, reset=True)
            base = None
            if TRACE:
                tracemalloc.start()
                base = tracemalloc.take_snapshot()
            first = await cycle(syncer)
            check(sim_stats(sim.url, reset=True), first, "first cycle")
            report("after the cold cycle", users, start, feeds, ids)
            if base is not None:
                peak = tracemalloc.get_traced_memory()[1]
                print(
                    f"  tracemalloc peak during the cold cycle: {peak / users / 1024:.1f} KiB/user"
                )
                top("after the cold cycle", users, base)
                tracemalloc.reset_peak()
            second = await cycle(syncer)
            await syncer.statuses.flush()
            check(sim_stats(sim.url, reset=True), second, "second cycle")
            report("after the unchanged cycle", users, start, feeds, ids)
            if base is not None:
                peak = tracemalloc.get_traced_memory()[1]
                print(f"  tracemalloc peak, unchanged cycle: {peak / users / 1024:.1f} KiB/user")
                top("after the unchanged cycle", users, base)
                tracemalloc.stop()
            await syncer.aclose()

        asyncio.run(both())
        check_feeds(feeds, sim.expected)
        state.close()


def main() -> int:
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(f"{users} users, {GROUPS} groups and {CONFERENCES} conferences each; trace: {TRACE}")
    try:
        run(users)
    except CheckFailed as exc:
        print(f"CHECK FAILED: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
