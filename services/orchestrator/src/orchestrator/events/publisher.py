"""Event publisher: store in MongoDB ``events`` with a sortable id and publish the
contract's event on ``EVENTS_CHANNEL``, concurrently. Redis pub/sub is at-most-once;
a ``/ws`` client replays what it missed with ``?since=`` from the recent-event stream
that the publish appends to in the same pipeline (``replay.py``), or from the stored
copy when it asks for something older. Events the webhooks feature asked for
(:meth:`EventPublisher.route_to_inbox`) are also inserted into the bounded
``event_inbox`` that the webhook scan drains, in the same gather. No HTTP code."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provisioning_common.events import EVENTS_CHANNEL, Event, EventBus

from .replay import ReplayStream
from .repository import EventRepository

log = logging.getLogger(__name__)

LocalSubscriber = Callable[[Event], Awaitable[None]]
# (event_type, data) -> whether the event goes to ``event_inbox`` too.
InboxSelector = Callable[[str, Mapping[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class InboxRoute:
    """Set as ``app[INBOX_ROUTE]`` by a feature's ``setup`` (webhooks): the events
    feature routes to the inbox from the moment it creates the publisher, before any
    other feature starts publishing."""

    select: InboxSelector


def new_event_id() -> str:
    """Sortable across replicas (nanosecond clock first), unique by the random tail."""
    return f"{time.time_ns():020d}-{secrets.token_hex(4)}"


class EventPublisher:
    def __init__(
        self, repository: EventRepository, bus: EventBus, replay: ReplayStream | None = None
    ) -> None:
        self.repository = repository
        self.bus = bus
        self.replay = replay
        self._subscribers: list[LocalSubscriber] = []
        self._inbox: InboxSelector | None = None

    def subscribe(self, callback: LocalSubscriber) -> None:
        """In-process callback for every event this replica publishes."""
        self._subscribers.append(callback)

    def route_to_inbox(self, select: InboxSelector) -> None:
        """Also insert every event that ``select(event_type, data)`` accepts into
        ``event_inbox`` (same document as in ``events``), concurrently with the
        ``events`` insert. The events feature calls this with the ``app[INBOX_ROUTE]``
        that the webhooks feature sets when it has endpoints; its scan drains the
        inbox. Without it nothing goes there."""
        self._inbox = select

    async def publish(
        self,
        event_type: str,
        data: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
    ) -> Event:
        event = Event(event_type, dict(data), dict(metadata or {}), id=new_event_id())
        wire = event.to_wire()
        stored, published, queued = await self._write(self.repository.insert(wire), [wire])
        if isinstance(stored, BaseException):
            log.error("could not store event %s: %s", event_type, type(stored).__name__)
        if isinstance(published, BaseException):
            log.warning("could not publish event %s: %s", event_type, type(published).__name__)
        if isinstance(queued, BaseException):
            log.error("could not queue event %s for webhooks: %s", event_type, _name(queued))
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
        stored, published, queued = await self._write(self.repository.insert_many(wires), wires)
        if isinstance(stored, BaseException):
            log.error("could not store %d events: %s", len(wires), type(stored).__name__)
        if isinstance(published, BaseException):
            log.warning("could not publish events: %s", type(published).__name__)
        if isinstance(queued, BaseException):
            log.error("could not queue events for webhooks: %s", _name(queued))
        await self._notify(events)
        return events

    async def _write(
        self, store: Coroutine[Any, Any, None], wires: Sequence[dict[str, Any]]
    ) -> tuple[object, object, object]:
        """Store, publish (with the replay stream) and queue for webhooks at once;
        each outcome is None or the exception it raised."""
        inbox = [w for w in wires if self._selected(w)]
        jobs: list[Coroutine[Any, Any, None]] = [store, self._broadcast(wires)]
        if inbox:
            jobs.append(self.repository.insert_inbox(inbox))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        stored, published, *queued = results
        return stored, published, queued[0] if queued else None

    def _selected(self, wire: Mapping[str, Any]) -> bool:
        if self._inbox is None:
            return False
        try:
            return self._inbox(str(wire["event_type"]), wire.get("data") or {})
        except Exception:
            log.exception("inbox selector failed; queueing the event")
            return True

    async def _broadcast(self, wires: Sequence[Mapping[str, Any]]) -> None:
        if self.replay is not None:
            await self.replay.publish(EVENTS_CHANNEL, wires)
            return
        for wire in wires:
            await self.bus.publish(EVENTS_CHANNEL, wire)

    async def _notify(self, events: Sequence[Event]) -> None:
        for event in events:
            for callback in self._subscribers:
                try:
                    await callback(event)
                except Exception:
                    log.exception("event subscriber failed")


def _name(exc: object) -> str:
    return type(exc).__name__
