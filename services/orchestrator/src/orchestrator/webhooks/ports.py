"""What the webhooks slice needs of other slices, as protocols the container wires
(``orchestrator.container``): the events slice's ``event_inbox``, which the event
publisher fills, and a task's document by id (the engine's store). No other slice's
repository is imported here; their classes satisfy these protocols structurally."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

# A task's document by id (``None`` when there is none).
TaskLookup = Callable[[str], Awaitable[Mapping[str, Any] | None]]


class EventInbox(Protocol):
    """The events slice's ``event_inbox``: read oldest first, drained by id."""

    async def inbox_page(self, limit: int) -> list[dict[str, Any]]: ...

    async def remove_from_inbox(self, event_id: str) -> None: ...
