"""Application factory: ``create_app(settings)``; nothing happens at import time."""

from __future__ import annotations

from aiohttp import web

from provisioning_common.webapp import (
    add_operational_routes,
    check_mongo,
    check_redis,
    create_base_app,
)

from .settings import Settings

SETTINGS = web.AppKey("settings", Settings)


def create_app(settings: Settings) -> web.Application:
    app = create_base_app(settings.common)
    app[SETTINGS] = settings
    add_operational_routes(
        app,
        health_message="Control center is healthy",
        checks={"storage": check_mongo, "redis": check_redis},
    )
    return app
