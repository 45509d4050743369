"""Wires the state feature: routes and its context (after the batch feature)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from orchestrator.batches.keys import BATCH_CONTEXT, COORDINATOR
from provisioning_common.webapp import DATABASE, REDIS

from .keys import STATE_CONTEXT
from .repository import TaskStatsRepository, database_size_bytes, ping
from .routes import routes
from .service import StateContext


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        db = app[DATABASE]
        redis = app[REDIS]
        batch_ctx = app[BATCH_CONTEXT]
        coordinator = app[COORDINATOR]

        async def storage() -> bool:
            await ping(db)
            return True

        async def monitoring() -> bool:
            # Events reach /ws of every replica through Redis pub/sub.
            return bool(await redis.ping())

        async def size() -> int:
            return await database_size_bytes(db)

        app[STATE_CONTEXT] = StateContext(
            batches=batch_ctx.repo,
            store=batch_ctx.engine.store,
            snapshots=batch_ctx.snapshots,
            stats=TaskStatsRepository(batch_ctx.engine.store),
            storage_probe=storage,
            coordinator_probe=coordinator.healthy,
            monitoring_probe=monitoring,
            database_size=size,
        )
        yield

    app.cleanup_ctx.append(ctx)
