"""Events: the publisher other features emit through (``app[PUBLISHER]``), their
storage in MongoDB ``events`` and ``GET /ws``.

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
from .publisher import EventPublisher, new_event_id
from .repository import EventRepository
from .settings import HUB, PUBLISHER, REPOSITORY, WS_SETTINGS, WsSettings
from .ws import routes

__all__ = ["PUBLISHER", "EventPublisher", "EventRepository", "new_event_id", "setup"]


def setup(app: web.Application) -> None:
    settings = WsSettings.from_env(EnvReader())
    app[WS_SETTINGS] = settings
    app.router.add_routes(routes)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        repository = EventRepository(app[DATABASE])
        await repository.ensure_indexes()
        app[REPOSITORY] = repository
        app[PUBLISHER] = EventPublisher(repository, app[EVENT_BUS])
        hub = EventHub(app[EVENT_BUS], settings.queue_size)
        app[HUB] = hub
        runner = asyncio.create_task(hub.run(), name="events-hub")
        try:
            yield
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    app.cleanup_ctx.append(ctx)
