"""Where the core's engine and event publisher live in the app."""

from __future__ import annotations

from aiohttp import web

from orchestrator.engine import Engine, TaskStore
from orchestrator.events import PUBLISHER, EventPublisher
from orchestrator.tasks.keys import ENGINE
from provisioning_common.mongo import Document


def engine_of(app: web.Application) -> Engine:
    return app[ENGINE]


def publisher_of(app: web.Application) -> EventPublisher:
    return app[PUBLISHER]


async def batch_tasks(store: TaskStore, batch_id: str) -> list[Document]:
    """The tasks of a batch (run and compensation tasks), oldest first."""
    return await store.find_by_batch(batch_id)
