"""Wires the rollback feature (after the batch feature)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from orchestrator.batches.keys import BATCH_CONTEXT, BATCH_SETTINGS

from .keys import ROLLBACK_CONTEXT
from .routes import routes
from .service import RollbackContext


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        b = app[BATCH_CONTEXT]
        app[ROLLBACK_CONTEXT] = RollbackContext(
            repo=b.ledger,
            batches=b.repo,
            snapshots=b.snapshots,
            engine=b.engine,
            publisher=b.publisher,
            worker_id=b.worker_id,
            wait_seconds=app[BATCH_SETTINGS].rollback_wait_seconds,
        )
        yield

    app.cleanup_ctx.append(ctx)
