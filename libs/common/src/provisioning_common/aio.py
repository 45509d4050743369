"""Small asyncio helpers the services share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
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

    async def stop(self, grace: float = 5.0) -> None:
        """Cancel every task and wait for each to end; a task that failed before is
        logged here rather than lost. A task still running ``grace`` seconds after its
        cancellation swallowed it (a library that turns a cancellation into a result,
        as ``wait_for`` does on 3.11): it is logged with where it is, and cancelled
        again, so that stop() never hangs on it."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        pending = {task for task in tasks if not task.done()}
        while pending:
            _, pending = await asyncio.wait(pending, timeout=grace)
            for task in pending:
                where = "".join(traceback.format_stack(task.get_stack(limit=1)[0], limit=1))
                log.warning(
                    "background task %s still runs after its cancellation; cancelling "
                    "again (at %s)",
                    task.get_name(),
                    where.strip() or "?",
                )
                task.cancel()
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                log.error("background task %s failed: %r", task.get_name(), task.exception())


@contextlib.asynccontextmanager
async def background(coro: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run ``coro`` as a task for the body's duration, then cancel and await it: the one
    way a service's container keeps a loop alive while the app runs."""
    tasks = BackgroundTasks()
    tasks.start(coro, name)
    try:
        yield
    finally:
        await tasks.stop()
