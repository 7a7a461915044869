"""The hourly cleanup of cluster mode on a real PostgreSQL: ended jobs leave the engine's
table (succeeded ones at once, failed ones after ``[cluster] keep_failed_jobs``), jobs still
to run or running stay, and stored profiles unused for days go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from bridge.config import AccountConfig, settings_from
from bridge.daemon.cluster import Cluster
from bridge.daemon.cycle import AccountResult
from bridge.state import open_state


async def test_cleanup_deletes_ended_jobs_and_keeps_failed_ones_for_a_while(pg_url: str) -> None:
    settings = settings_from(
        {"state": {"url": pg_url}, "cluster": {"enabled": True, "keep_failed_jobs": "3d"}}
    )
    state = open_state(pg_url)  # calbridge's schema and the engine's

    async def run(account: AccountConfig) -> AccountResult:
        raise AssertionError("no job runs here")

    async def refresh() -> None:
        return None

    cluster = Cluster(
        settings.cluster,
        pg_url,
        state,
        replica="test:1",
        accounts=list,
        run_account=run,
        refresh=refresh,
    )
    await cluster.app.open_async()
    try:
        ids = {}
        for name in ("succeeded", "failed_2d", "failed_4d", "cancelled_4d", "todo", "doing"):
            task = cluster._sync_task.configure(lock=name, queueing_lock=name)
            ids[name] = await task.defer_async(account_id=name, due=0.0)
        dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as conn:
            for name, status, age in (
                ("succeeded", "succeeded", 0),
                ("failed_2d", "failed", 2),
                ("failed_4d", "failed", 4),
                ("cancelled_4d", "cancelled", 4),
                ("doing", "doing", 4),
            ):
                conn.execute(
                    "UPDATE procrastinate_jobs SET status = %s WHERE id = %s", (status, ids[name])
                )
                conn.execute(
                    "UPDATE procrastinate_events SET at = now() - %s WHERE job_id = %s",
                    (timedelta(days=age), ids[name]),
                )
        now = datetime.now(UTC)
        state.profiles.put("stale", "{}", now - timedelta(days=3))
        state.profiles.put("fresh", "{}", now - timedelta(hours=1))

        assert await cluster.cleanup() == (1, 2)

        with psycopg.connect(dsn) as conn:
            left = {row[0] for row in conn.execute("SELECT id FROM procrastinate_jobs")}
        assert left == {ids["failed_2d"], ids["todo"], ids["doing"]}
        assert state.profiles.get("fresh", now - timedelta(days=1)) is not None
        assert state.profiles.get("stale", now - timedelta(days=30)) is None
        assert await cluster.cleanup() == (0, 0)  # nothing more to delete
    finally:
        await cluster.app.close_async()
        state.close()
