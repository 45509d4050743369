"""Application factory: ``create_app(settings)``; nothing happens at import time.

The composition root is :class:`~control_center.container.Container`, built here once
from the settings and started in ``cleanup_ctx``. Each feature is one
``setup(app, container)`` that only adds routes; handlers reach the container through
``request.app[CONTAINER]``. The orchestrator is built the same way."""

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

from .audit.setup import setup as audit_setup
from .auth.setup import setup as auth_setup
from .container import Container
from .deps import CONTAINER
from .keys.setup import setup as keys_setup
from .policies.setup import setup as policies_setup
from .settings import Settings
from .users.setup import setup as users_setup

Feature = Callable[[web.Application, Container], None]

# Each feature's setup(app, container) adds its routes; what runs in the background is
# started by the container. Adding a feature is one line here.
FEATURES: list[Feature] = [auth_setup, users_setup, policies_setup, audit_setup, keys_setup]


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
    app.on_response_prepare.append(_no_store)
    add_operational_routes(
        app,
        health_message="Control center is healthy",
        checks={"storage": check_mongo, "redis": check_redis},
    )
    for feature in FEATURES:
        feature(app, container)
    add_openapi_routes(app, "Provisioning control center", "1.0.0")
    enable_cors(app, settings.common.cors_origins)  # last: covers every route
    return app


async def _no_store(request: web.Request, response: web.StreamResponse) -> None:
    """Tokens, TOTP secrets and user data must not sit in a shared or browser cache
    (RFC 6749 §5.1); a handler that allows caching (the JWKS) says so itself."""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Pragma", "no-cache")
