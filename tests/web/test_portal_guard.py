"""The sign-in rate limit of the personal pages: a token bucket per client address."""

from __future__ import annotations

from bridge.web.portal.guard import RateLimit


def test_a_burst_then_the_rate_per_address() -> None:
    limit = RateLimit(3, 60.0)  # 3 at once, then one a second
    assert [limit.allow("10.0.0.1", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert limit.allow("10.0.0.2", now=0.0)  # another address has its own bucket
    assert not limit.allow("10.0.0.1", now=0.5)
    assert limit.allow("10.0.0.1", now=1.6)
    assert [limit.allow("10.0.0.1", now=100.0) for _ in range(4)] == [True, True, True, False]


def test_memory_stays_bounded_and_forgets_the_idle_first() -> None:
    limit = RateLimit(2, 1.0, max_clients=100)
    limit.allow("busy", now=0.0)
    limit.allow("busy", now=0.0)
    for n in range(200):
        limit.allow(f"10.1.{n // 256}.{n % 256}", now=1.0)
    assert len(limit._buckets) <= 100
    assert not limit.allow("busy", now=1.0)  # still remembered: its bucket is empty
