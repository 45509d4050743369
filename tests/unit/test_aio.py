"""``wait_event``: a background loop's wait that never swallows its cancellation."""

from __future__ import annotations

import asyncio

import pytest

from provisioning_common.aio import wait_event


async def test_set_and_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 1.0) is True


async def test_a_cancellation_that_meets_the_event_is_not_swallowed() -> None:
    """What ``asyncio.wait_for(event.wait(), t)`` gets wrong on Python 3.11: cancelled in
    the same loop iteration as the event is set, it returns instead of raising, and a
    loop built on it runs on after ``stop()`` cancelled it."""
    event = asyncio.Event()
    runs = 0

    async def loop() -> None:
        nonlocal runs
        while True:
            runs += 1
            await wait_event(event, 10.0)
            event.clear()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)  # waiting on the event
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2.0)
    assert task.cancelled()
