"""Events: the publisher other features emit through (``app[PUBLISHER]``), their
storage in MongoDB ``events``, the recent-event replay stream in Redis
(``replay.py``, ``WS_REPLAY_CACHE`` events; 0 turns it off) and ``GET /ws``.

    from orchestrator.events import PUBLISHER
    await request.app[PUBLISHER].publish("BatchStatusChanged", data={...}, metadata={...})
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from provisioning_common.config import EnvReader
from provisioning_common.webapp import DATABASE, EVENT_BUS

from .hub import EventHub
from .publisher import EventPublisher, InboxRoute, new_event_id
from .replay import ReplayStream
from .repository import EventRepository
from .settings import (
    HUB,
    INBOX_ROUTE,
    PUBLISHER,
    REPLAY,
    REPOSITORY,
    WS_SETTINGS,
    WsSettings,
)
from .ws import routes

__all__ = [
    "INBOX_ROUTE",
    "PUBLISHER",
    "EventPublisher",
    "EventRepository",
    "InboxRoute",
    "ReplayStream",
    "new_event_id",
    "setup",
]


def setup(app: web.Application) -> None:
    settings = WsSettings.from_env(EnvReader())
    app[WS_SETTINGS] = settings
    app.router.add_routes(routes)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        repository = EventRepository(app[DATABASE])
        await repository.ensure_indexes()
        app[REPOSITORY] = repository
        bus = app[EVENT_BUS]
        replay = None
        if settings.replay_cache > 0:
            # Namespaced by database, like the task index (engine/index.py).
            replay = ReplayStream(bus.redis, app[DATABASE].name, settings.replay_cache)
            app[REPLAY] = replay
        publisher = EventPublisher(repository, bus, replay)
        route = app.get(INBOX_ROUTE)  # set by the webhooks feature's setup
        if route is not None:
            publisher.route_to_inbox(route.select)
        app[PUBLISHER] = publisher
        hub = EventHub(bus, settings.queue_size)
        app[HUB] = hub
        runner = asyncio.create_task(hub.run(), name="events-hub")
        try:
            yield
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    app.cleanup_ctx.append(ctx)
