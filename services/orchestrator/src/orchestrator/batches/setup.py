"""Wires the batch feature into the app: routes, indexes, the coordinator."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from orchestrator.rollback.repository import RollbackRepository
from orchestrator.state.repository import SnapshotRepository
from provisioning_common.webapp import DATABASE

from .coordinator import BatchCoordinator
from .keys import BATCH_CONTEXT, BATCH_SETTINGS, COORDINATOR
from .ports import engine_of, publisher_of
from .repository import BatchRepository
from .routes import routes
from .service import BatchContext
from .settings import BatchSettings


def setup(app: web.Application) -> None:
    settings = BatchSettings.from_env()
    app[BATCH_SETTINGS] = settings
    app.router.add_routes(routes)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        db = app[DATABASE]
        engine = engine_of(app)
        repo = BatchRepository(db)
        snapshots = SnapshotRepository(db)
        ledger = RollbackRepository(db)
        for r in (repo, snapshots, ledger):
            await r.ensure_indexes()
        context = BatchContext(
            repo=repo,
            snapshots=snapshots,
            ledger=ledger,
            engine=engine,
            publisher=publisher_of(app),
            cli=engine.settings.cli,
            worker_id=engine.worker_id,
            orphan_after_seconds=settings.orphan_after_seconds,
        )
        coordinator = BatchCoordinator(context, settings.coordinator_interval_seconds)
        engine.add_final_listener(coordinator.on_task_final)
        app[BATCH_CONTEXT] = context
        app[COORDINATOR] = coordinator
        coordinator.start()
        try:
            yield
        finally:
            await coordinator.stop()

    app.cleanup_ctx.append(ctx)
