"""Event publisher: store in MongoDB ``events`` with a sortable id, then publish the
contract's event on ``EVENTS_CHANNEL`` (Redis pub/sub is at-most-once; the stored
copy lets a ``/ws`` client replay with ``?since=``). No HTTP code."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from provisioning_common.events import EVENTS_CHANNEL, Event, EventBus

from .repository import EventRepository

log = logging.getLogger(__name__)

LocalSubscriber = Callable[[Event], Awaitable[None]]


def new_event_id() -> str:
    """Sortable across replicas (nanosecond clock first), unique by the random tail."""
    return f"{time.time_ns():020d}-{secrets.token_hex(4)}"


class EventPublisher:
    def __init__(self, repository: EventRepository, bus: EventBus) -> None:
        self.repository = repository
        self.bus = bus
        self._subscribers: list[LocalSubscriber] = []

    def subscribe(self, callback: LocalSubscriber) -> None:
        """In-process callback for every event this replica publishes."""
        self._subscribers.append(callback)

    async def publish(
        self,
        event_type: str,
        data: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
    ) -> Event:
        event = Event(event_type, dict(data), dict(metadata or {}), id=new_event_id())
        wire = event.to_wire()
        stored, published = await asyncio.gather(
            self.repository.insert(wire),
            self.bus.publish(EVENTS_CHANNEL, wire),
            return_exceptions=True,
        )
        if isinstance(stored, BaseException):
            log.error("could not store event %s: %s", event_type, type(stored).__name__)
        if isinstance(published, BaseException):
            log.warning("could not publish event %s: %s", event_type, type(published).__name__)
        await self._notify([event])
        return event

    async def publish_many(
        self, items: Sequence[tuple[str, Mapping[str, Any], Mapping[str, Any] | None]]
    ) -> list[Event]:
        """Like ``publish`` for many ``(event_type, data, metadata)``: one stored insert."""
        events = [
            Event(kind, dict(data), dict(metadata or {}), id=new_event_id())
            for kind, data, metadata in items
        ]
        wires = [e.to_wire() for e in events]

        async def publish_in_order() -> None:
            for wire in wires:
                await self.bus.publish(EVENTS_CHANNEL, wire)

        stored, published = await asyncio.gather(
            self.repository.insert_many(wires), publish_in_order(), return_exceptions=True
        )
        if isinstance(stored, BaseException):
            log.error("could not store %d events: %s", len(wires), type(stored).__name__)
        if isinstance(published, BaseException):
            log.warning("could not publish events: %s", type(published).__name__)
        await self._notify(events)
        return events

    async def _notify(self, events: Sequence[Event]) -> None:
        for event in events:
            for callback in self._subscribers:
                try:
                    await callback(event)
                except Exception:
                    log.exception("event subscriber failed")
