"""Application factory: ``create_app(settings)``; nothing happens at import time.

The composition root is :class:`~orchestrator.container.Container`, built here once
from the settings and started in ``cleanup_ctx``. Each feature is one
``setup(app, container)`` that only adds routes (and middleware); handlers reach the
container through ``request.app[CONTAINER]``. Adding a feature is one line in
``FEATURES``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from provisioning_common.openapi import add_openapi_routes
from provisioning_common.webapp import (
    add_operational_routes,
    bind_storage,
    check_mongo,
    check_redis,
    create_base_app,
    enable_cors,
)

from . import console
from .auth.setup import setup as auth_setup
from .batches.setup import setup as batches_setup
from .container import Container
from .deps import CONTAINER
from .events.setup import setup as events_setup
from .rollback.setup import setup as rollback_setup
from .settings import Settings
from .state.setup import setup as state_setup
from .tasks.setup import setup as tasks_setup
from .webhooks.setup import setup as webhooks_setup
from .workflows.setup import setup as workflows_setup

Feature = Callable[[web.Application, Container], None]


def console_setup(app: web.Application, container: Container) -> None:
    console.setup(app, container.settings.console)


# Routes and middleware, in this order (the console's middleware goes in front of the
# auth middleware). What runs in the background is started by the container.
FEATURES: list[Feature] = [
    events_setup,
    auth_setup,
    tasks_setup,
    workflows_setup,
    webhooks_setup,
    batches_setup,
    state_setup,
    rollback_setup,
    console_setup,
]


def create_app(settings: Settings) -> web.Application:
    app = create_base_app(settings.common)
    container = Container(settings)
    app[CONTAINER] = container

    async def run_container(app: web.Application) -> AsyncIterator[None]:
        await container.start()
        bind_storage(app, container.storage)
        try:
            yield
        finally:
            await container.stop()

    app.cleanup_ctx.append(run_container)
    add_operational_routes(
        app,
        health_message="Orchestrator is healthy",
        checks={"storage": check_mongo, "redis": check_redis},
    )
    for feature in FEATURES:
        feature(app, container)
    add_openapi_routes(app, "Provisioning orchestrator", "1.0.0")
    enable_cors(app, settings.common.cors_origins)  # last: covers every route
    return app
