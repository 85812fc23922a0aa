"""Client-side rate budgets: the documented per-endpoint limits, on a fake clock."""

from __future__ import annotations

import random

import pytest

from pipeline.sources.http import DOCUMENTED_LIMITS, Limit, RateBudget, RetryPolicy
from tests.support.lab import FakeClock


def test_thirty_calls_a_minute_then_the_next_waits_for_the_first_to_leave_the_window() -> None:
    clock = FakeClock()
    budget = RateBudget("deviceavinfo", DOCUMENTED_LIMITS["deviceavinfo"], clock, clock.sleep)
    start = clock()

    for _ in range(30):
        budget.acquire()
    assert clock.sleeps == []

    budget.acquire()

    assert clock.sleeps == [pytest.approx(60.0)]
    assert clock() - start == pytest.approx(60.0)


def test_hourly_limit_binds_after_a_thousand_deviceavinfo_calls() -> None:
    clock = FakeClock()
    budget = RateBudget("deviceavinfo", DOCUMENTED_LIMITS["deviceavinfo"], clock, clock.sleep)
    start = clock()

    for _ in range(1000):
        budget.acquire()
    before_hour_limit = clock() - start
    budget.acquire()

    # 1,000 calls at 30 a minute take 33 full minutes; call 1,001 must wait for the hour.
    assert before_hour_limit == pytest.approx(33 * 60.0)
    assert clock() - start == pytest.approx(3600.0)


def test_calls_spread_over_time_never_wait() -> None:
    clock = FakeClock()
    budget = RateBudget("machines", DOCUMENTED_LIMITS["machines"], clock, clock.sleep)

    for _ in range(500):
        budget.acquire()
        clock.advance(2.5)  # 24 a minute, 1,440 an hour: within 100/min and 1,500/h

    assert budget.waited == 0


def test_sliding_window_never_exceeds_any_limit() -> None:
    clock = FakeClock()
    limits = (Limit(5, 10), Limit(12, 60))
    budget = RateBudget("x", limits, clock, clock.sleep)
    sent = []
    rng = random.Random(3)

    for _ in range(80):
        budget.acquire()
        sent.append(clock())
        clock.advance(rng.choice((0.0, 0.5, 3.0)))

    for limit in limits:
        for moment in sent:
            in_window = [t for t in sent if moment - limit.per_seconds < t <= moment]
            assert len(in_window) <= limit.calls


def test_endpoint_without_documented_limit_never_waits() -> None:
    clock = FakeClock()
    budget = RateBudget("graph-devices", (), clock, clock.sleep)

    for _ in range(10_000):
        budget.acquire()

    assert clock.sleeps == []


def test_backoff_grows_and_is_capped_with_jitter() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_cap=8.0)
    rng = random.Random(1)

    waits = [policy.backoff(attempt, rng) for attempt in (1, 2, 3, 4, 5, 6)]

    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(c / 10 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    assert len({round(w, 6) for w in waits}) == len(waits)  # jittered, not fixed steps
