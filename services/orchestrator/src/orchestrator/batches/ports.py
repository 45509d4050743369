"""What the batch service reads from the engine's task store."""

from __future__ import annotations

from orchestrator.engine import TaskStore
from provisioning_common.mongo import Document


async def batch_tasks(store: TaskStore, batch_id: str) -> list[Document]:
    """The tasks of a batch (run and compensation tasks), oldest first."""
    return await store.find_by_batch(batch_id)
