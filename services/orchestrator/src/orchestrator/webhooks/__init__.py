"""Signed webhooks for ``task.completed``, ``task.failed``, ``batch.completed``,
``batch.failed`` and ``rollback.completed`` (``docs/webhooks.md``).

Configured by the TOML ``[webhooks]`` section (``PROVISIONING_CONFIG``). Fed by the
event publisher through the bounded ``event_inbox``, asked for here at setup with
``app[INBOX_ROUTE]`` when endpoints are configured (the events feature routes from the
moment it creates the publisher, before the engine can publish). Delivered through
the durable outbox of :mod:`provisioning_common.outbox`; inspected and re-sent with
``GET /webhooks/deliveries`` and ``POST /webhooks/deliveries/{id}/redeliver``.
``setup(app)`` wires it all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from provisioning_common.webapp import COMMON_SETTINGS, DATABASE, EVENT_BUS

from ..events.publisher import InboxRoute
from ..events.repository import EventRepository
from ..events.settings import INBOX_ROUTE
from .config import WebhookSettings
from .keys import WEBHOOKS
from .routes import routes
from .service import WebhookService

__all__ = ["WEBHOOKS", "WebhookService", "WebhookSettings", "setup"]


def setup(app: web.Application) -> None:
    # Read now so that a bad [webhooks] section stops the start with its message.
    settings = WebhookSettings.from_toml(app[COMMON_SETTINGS].toml)
    app.router.add_routes(routes)
    if settings.routes_events:
        app[INBOX_ROUTE] = InboxRoute(settings.wants)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        db = app[DATABASE]
        service = WebhookService(
            settings,
            db,
            EventRepository(db),
            bus=app[EVENT_BUS],
            task_lookup=_task_lookup(app),
        )
        app[WEBHOOKS] = service
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app.cleanup_ctx.append(ctx)


def _task_lookup(app: web.Application) -> Any:
    """The engine's task store when the tasks feature is installed, else None."""
    from ..tasks.keys import ENGINE

    engine = app.get(ENGINE)
    return engine.store.get if engine is not None else None
