"""Small asyncio helpers the services share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

log = logging.getLogger(__name__)


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; True when it was set.

    Not ``asyncio.wait_for(event.wait(), timeout)``: on Python 3.11 that returns the
    result instead of raising when the task is cancelled just as the event is set
    (CPython gh-86296, fixed in 3.12), so a background loop cancelled at stop could
    miss its cancellation and run on forever, leaving whoever awaits it hanging.
    ``asyncio.timeout`` does not swallow a cancellation."""
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


class BackgroundTasks:
    """The loops a component owns: started by name, cancelled and awaited together at
    ``stop()`` — the one way a service component keeps tasks alive (a container keeps a
    single loop for the app's lifetime with ``background``)."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[Any]] = []

    def start(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    @property
    def running(self) -> bool:
        return any(not task.done() for task in self._tasks)

    async def stop(self) -> None:
        """Cancel every task and wait for each to end; a task that failed before is
        logged here rather than lost."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task, result in zip(
            tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True
        ):
            if isinstance(result, Exception):
                log.error("background task %s failed: %r", task.get_name(), result)


@contextlib.asynccontextmanager
async def background(coro: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run ``coro`` as a task for the body's duration, then cancel and await it: the one
    way a service's container keeps a loop alive while the app runs."""
    task = asyncio.create_task(coro, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
