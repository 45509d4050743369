"""Retention of finished history (``docs/retention.md``): a background sweeper that,
once per ``RETENTION_SWEEP_SECONDS`` and on one replica at a time, removes tasks
finished longer than ``RETENTION_DAYS`` ago with everything stored under their ids,
and stored events and finished outbox items older than the window.

Started after the engine (its ``TaskStore`` and task index are what it walks)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from provisioning_common.config import EnvReader
from provisioning_common.webapp import DATABASE, background

from ..tasks.keys import ENGINE
from .repository import RetentionRepository
from .service import PassResult, RetentionSweeper
from .settings import RetentionSettings

__all__ = [
    "RETENTION_SETTINGS",
    "PassResult",
    "RetentionRepository",
    "RetentionSettings",
    "RetentionSweeper",
    "setup",
]

RETENTION_SETTINGS = web.AppKey("retention_settings", RetentionSettings)


def setup(app: web.Application) -> None:
    settings = RetentionSettings.from_env(EnvReader())
    app[RETENTION_SETTINGS] = settings

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if not settings.enabled:
            yield
            return
        engine = app[ENGINE]
        sweeper = RetentionSweeper(
            RetentionRepository(engine.store, app[DATABASE]),
            settings,
            worker_id=engine.worker_id,
        )
        async with background(sweeper.run(), "retention-sweeper"):
            yield

    app.cleanup_ctx.append(ctx)
