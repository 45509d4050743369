"""The retry delay shared by libs/common: exponential, capped, with jitter."""

from __future__ import annotations

import random


def exponential_backoff(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Delay before attempt ``attempt + 1``, after ``attempt`` failed ones (1-based):
    ``base * 2 ** (attempt - 1)``, at most ``cap``, with jitter in [50 %, 100 %] so
    that many callers failing together do not retry together."""
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    jitter = float((rng or random).random())
    return ceiling * (0.5 + 0.5 * jitter)
