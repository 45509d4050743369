"""Events in the contract's format, published on Redis pub/sub.

``{"event_type", "timestamp", "data", "metadata"}``; an ``id`` is added so that a
client can resume from the last event it saw."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from .envelope import format_timestamp
from .timeutil import utcnow

EVENTS_CHANNEL = "provisioning:events"
REVOCATIONS_CHANNEL = "provisioning:revocations"
POLICIES_CHANNEL = "provisioning:policies.changed"


@dataclass(frozen=True, slots=True)
class Event:
    event_type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=utcnow)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_type": self.event_type,
            "timestamp": format_timestamp(self.timestamp),
            "data": dict(self.data),
            "metadata": dict(self.metadata),
        }


class EventBus:
    """Thin publish/subscribe over Redis channels with JSON payloads."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def publish(self, channel: str, payload: Mapping[str, Any]) -> None:
        await self.redis.publish(channel, json.dumps(payload, default=str))

    async def subscribe(self, *channels: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Yield ``(channel, payload)`` until cancelled; undecodable messages are skipped."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(*channels)
        try:
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                try:
                    payload = json.loads(message["data"])
                except (TypeError, ValueError):
                    continue
                if isinstance(payload, dict):
                    yield str(message["channel"]), payload
        finally:
            await pubsub.unsubscribe()
            await pubsub.aclose()  # type: ignore[no-untyped-call]
