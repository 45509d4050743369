"""``wait_event``: a background loop's wait that never swallows its cancellation."""

from __future__ import annotations

import asyncio

import pytest

from provisioning_common.aio import BackgroundTasks, wait_event


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


async def test_background_tasks_stop_a_task_that_swallows_its_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A loop that turns its first cancellation into a result (a library bug) keeps
    running; stop() cancels it again after the grace period instead of hanging, and
    says where it was."""
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # the first one is lost

    async def failing() -> None:
        raise ValueError("broken")

    tasks = BackgroundTasks()
    tasks.start(stubborn(), "stubborn")
    tasks.start(failing(), "failing")
    await asyncio.sleep(0.01)
    async with asyncio.timeout(5):
        await tasks.stop(grace=0.1)
    assert swallowed == 1
    assert not tasks.running
    assert "background task stubborn still runs after its cancellation" in caplog.text
    assert "background task failing failed" in caplog.text
