"""Events: the publisher other features emit through (``container.publisher``), their
storage in MongoDB ``events``, the recent-event replay stream in Redis
(``replay.py``, ``WS_REPLAY_CACHE`` events; 0 turns it off) and ``GET /ws``.

    await container_of(request).publisher.publish(
        EventType.BATCH_STATUS_CHANGED, data={...}, metadata={...}
    )

(event types: :class:`orchestrator.event_types.EventType`, defined once).

The container builds the publisher, the hub and the replay stream; ``setup`` adds ``/ws``.
"""

from __future__ import annotations

from .hub import EventHub
from .publisher import EventPublisher, InboxRoute, new_event_id
from .replay import ReplayStream
from .repository import EventRepository
from .settings import WsSettings

__all__ = [
    "EventHub",
    "EventPublisher",
    "EventRepository",
    "InboxRoute",
    "ReplayStream",
    "WsSettings",
    "new_event_id",
]
