"""Fan-out of ``EVENTS_CHANNEL`` to this replica's ``/ws`` clients: one Redis
subscription per process, one bounded queue per client; a client whose queue is full
is dropped, never waited for, so a slow consumer cannot stall the others."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from provisioning_common.events import EVENTS_CHANNEL, EventBus

log = logging.getLogger(__name__)


class Subscriber:
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self.overflowed = asyncio.Event()


class EventHub:
    def __init__(self, bus: EventBus, queue_size: int) -> None:
        self.bus = bus
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()

    def add(self) -> Subscriber:
        sub = Subscriber(self.queue_size)
        self.subscribers.add(sub)
        return sub

    def remove(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def dispatch(self, event: dict[str, Any]) -> None:
        for sub in list(self.subscribers):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.overflowed.set()
                self.subscribers.discard(sub)

    async def run(self) -> None:
        while True:
            try:
                async for _, payload in self.bus.subscribe(EVENTS_CHANNEL):
                    self.dispatch(payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event subscription lost (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(1.0)
