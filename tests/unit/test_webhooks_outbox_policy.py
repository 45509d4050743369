"""The outbox's retry delays: exponential, capped, jittered within [50 %, 100 %]."""

from __future__ import annotations

import random

import pytest

from provisioning_common.outbox import Outbox, RetryPolicy


def test_backoff_doubles_with_jitter_and_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (30, 10.0)]:
        delays = [policy.backoff(attempt, rng) for _ in range(200)]
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays), attempt
        assert max(delays) - min(delays) > ceiling * 0.3  # really jittered


def test_lease_must_outlive_an_attempt() -> None:
    async def deliver(*_: object) -> None:
        raise AssertionError

    with pytest.raises(ValueError, match="lease"):
        Outbox(None, "x", deliver, RetryPolicy(attempt_timeout=10, lease_seconds=5))  # type: ignore[arg-type]
