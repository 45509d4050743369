"""Tasks feature: runs the engine in this replica (``app[ENGINE]``) and serves ``/tasks``.

from orchestrator.tasks import ENGINE
engine = request.app[ENGINE]        # see services/orchestrator/ENGINE_API.md
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from provisioning_common.config import EnvReader
from provisioning_common.webapp import DATABASE, REDIS

from ..engine import Engine, EngineSettings, TaskStore
from ..events import PUBLISHER
from .keys import ENGINE
from .routes import routes

__all__ = ["ENGINE", "setup"]

ENGINE_SETTINGS = web.AppKey("engine_settings", EngineSettings)


def setup(app: web.Application) -> None:
    settings = EngineSettings.from_env(EnvReader())
    app[ENGINE_SETTINGS] = settings
    app.router.add_routes(routes)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        engine = Engine(TaskStore(app[DATABASE], app[REDIS]), settings, app[PUBLISHER])
        app[ENGINE] = engine
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    app.cleanup_ctx.append(ctx)
