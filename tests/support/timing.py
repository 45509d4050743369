"""Timing helpers for tests that depend on wall-clock windows."""

from __future__ import annotations

import time


def wait_fresh_window(window: int, needed: float = 30.0) -> None:
    """The rate limiter's windows are aligned on the epoch: when fewer than ``needed``
    seconds are left in the current one, wait into the next (the sliding estimate
    across a boundary would let through a request the test expects refused). A wait
    for a known instant, not a synchronisation."""
    left = window - time.time() % window
    if left < needed:
        time.sleep(left + 0.1)
