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
from provisioning_common.group_commit import GroupCommit

from .replay import ReplayStream
from .repository import EventRepository

log = logging.getLogger(__name__)

LocalSubscriber = Callable[[Event], Awaitable[None]]
# (event_type, data) -> whether the event goes to ``event_inbox`` too.
InboxSelector = Callable[[str, Mapping[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class InboxRoute:
    """What the webhooks feature wants in its inbox (``webhooks.inbox_route``): the
    container routes the publisher to it as it creates it, before anything publishes."""

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
        self._writes: GroupCommit[Event, None] = GroupCommit(self._write_group, name="event-writer")

    def subscribe(self, callback: LocalSubscriber) -> None:
        """In-process callback for every event this replica publishes."""
        self._subscribers.append(callback)

    def route_to_inbox(self, select: InboxSelector) -> None:
        """Also insert every event that ``select(event_type, data)`` accepts into
        ``event_inbox`` (same document as in ``events``), concurrently with the
        ``events`` insert. The container calls this with the webhooks feature's
        :class:`InboxRoute` when it has endpoints; its scan drains the inbox. Without
        it nothing goes there."""
        self._inbox = select

    async def publish(
        self,
        event_type: str,
        data: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
    ) -> Event:
        event = Event(event_type, dict(data), dict(metadata or {}), id=new_event_id())
        await self._commit([event])
        await self._notify([event])
        return event

    async def publish_many(
        self, items: Sequence[tuple[str, Mapping[str, Any], Mapping[str, Any] | None]]
    ) -> list[Event]:
        """Like ``publish`` for many ``(event_type, data, metadata)`` at once."""
        events = [
            Event(kind, dict(data), dict(metadata or {}), id=new_event_id())
            for kind, data, metadata in items
        ]
        await self._commit(events)
        await self._notify(events)
        return events

    async def _commit(self, events: Sequence[Event]) -> None:
        """Store, publish and queue ``events``, sharing the write with whatever else
        is published meanwhile (``provisioning_common.group_commit``)."""
        await self._writes.submit(events)

    async def _write_group(self, events: list[Event]) -> list[None]:
        wires = [e.to_wire() for e in events]
        stored, published, queued = await self._write(self.repository.insert_many(wires), wires)
        _report(wires, stored, published, queued)
        return [None] * len(events)

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


def _report(
    wires: Sequence[Mapping[str, Any]], stored: object, published: object, queued: object
) -> None:
    kinds = ", ".join(sorted({str(w["event_type"]) for w in wires}))
    if isinstance(stored, BaseException):
        log.error("could not store %d events (%s): %s", len(wires), kinds, _name(stored))
    if isinstance(published, BaseException):
        log.warning("could not publish events (%s): %s", kinds, _name(published))
    if isinstance(queued, BaseException):
        log.error("could not queue events (%s) for webhooks: %s", kinds, _name(queued))


def _name(exc: object) -> str:
    return type(exc).__name__
