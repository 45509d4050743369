"""Application factory: ``create_app(settings)``; nothing happens at import time.

The app is built from a list of feature setup functions, each
``def setup(app: web.Application) -> None`` in its own package: it adds routes,
``cleanup_ctx`` entries and background tasks, and reads its own settings from env."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from provisioning_common.openapi import add_openapi_routes
from provisioning_common.webapp import (
    add_operational_routes,
    check_mongo,
    check_redis,
    create_base_app,
    enable_cors,
)

from . import audit, auth, events, metrics, retention, tasks, webhooks, workflows
from .batches.setup import setup as batches_setup
from .rollback.setup import setup as rollback_setup
from .settings import Settings
from .state.setup import setup as state_setup

SETTINGS = web.AppKey("settings", Settings)

Feature = Callable[[web.Application], None]

# Order matters: cleanup_ctx entries start in this order (and stop in reverse), so
# events (the publisher) and auth come before the features that use them, and the
# engine (tasks) before features that create tasks. Other packages append their
# ``setup`` here (batches, rollback, state, webhooks, ...).
FEATURES: list[Feature] = [
    events.setup,
    auth.setup,
    tasks.setup,
    workflows.setup,
    audit.setup,
    webhooks.setup,
    metrics.setup,
    batches_setup,
    state_setup,
    rollback_setup,
    retention.setup,
]


def create_app(settings: Settings) -> web.Application:
    app = create_base_app(settings.common)
    app[SETTINGS] = settings
    add_operational_routes(
        app,
        health_message="Orchestrator is healthy",
        checks={"storage": check_mongo, "redis": check_redis},
    )
    for feature in FEATURES:
        feature(app)
    add_openapi_routes(app, "Provisioning orchestrator", "1.0.0")
    enable_cors(app, settings.common.cors_origins)  # last: covers every route
    return app
