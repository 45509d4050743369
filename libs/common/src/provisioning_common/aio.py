"""Small asyncio helpers the services share."""

from __future__ import annotations

import asyncio


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
