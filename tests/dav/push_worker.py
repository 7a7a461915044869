"""Run by test_crash.py in a subprocess: push N events into a CalDAV calendar with the real
SQLite state store, printing progress, so the test can kill -9 it mid-push."""

from __future__ import annotations

import asyncio
import sys

from bridge.state import open_state
from bridge.sync.run import CalendarSync
from tests.helpers.dav import NOW, desired, event
from tests.helpers.options import target_settings


def main(url: str, state_url: str, count: int) -> None:
    state = open_state(state_url)
    settings = target_settings("phone", url)
    report = asyncio.run(
        CalendarSync(settings).run(
            desired(*[event(i) for i in range(count)]), state.caldav, now=NOW
        )
    )
    print(
        f"created={report.created} adopted={report.adopted} unchanged={report.unchanged} errors={len(report.errors)}",
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
