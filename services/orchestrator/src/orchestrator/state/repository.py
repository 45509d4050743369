"""The only code that touches ``state_snapshots`` and reads database statistics (task
statistics through the engine's store, a :class:`~orchestrator.state.ports.TaskReader`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from orchestrator.engine.model import COMPLETED
from provisioning_common.mongo import Document, IndexSpec, claim, ensure_indexes

from .ports import TaskReader

SNAPSHOTS = "state_snapshots"


class SnapshotRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.snapshots = db[SNAPSHOTS]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(
            self.snapshots,
            [
                IndexSpec(
                    [("workflow_id", ASCENDING), ("timestamp", ASCENDING), ("_id", ASCENDING)],
                    "workflow_time_id",
                ),
            ],
        )

    async def record(
        self,
        workflow_id: str,
        state: str,
        at: datetime,
        details: Mapping[str, Any],
        *,
        key: str | None = None,
    ) -> bool:
        """One snapshot per status change; the unique ``_id`` (workflow id + state)
        makes the replica that records it first the one that owns the change."""
        return await claim(
            self.snapshots,
            {
                "_id": key or f"{workflow_id}:{state}",
                "workflow_id": workflow_id,
                "state": state,
                "timestamp": at,
                "details": dict(details),
            },
        )

    async def for_workflow(self, workflow_id: str) -> list[Document]:
        cursor = self.snapshots.find({"workflow_id": workflow_id}).sort(
            [("timestamp", ASCENDING), ("_id", ASCENDING)]
        )
        return [doc async for doc in cursor]

    async def count(self) -> int:
        return await self.snapshots.count_documents({})

    async def count_for(self, workflow_ids: list[str]) -> int:
        return await self.snapshots.count_documents({"workflow_id": {"$in": workflow_ids}})

    async def delete_for(self, workflow_ids: list[str]) -> None:
        await self.snapshots.delete_many({"workflow_id": {"$in": workflow_ids}})


async def database_size_bytes(db: AsyncDatabase[Document]) -> int:
    """Storage used, from the server's own ``dbStats`` (dataSize + indexSize, or
    storageSize where the server does not report dataSize)."""
    stats = await db.command("dbStats")
    data = stats.get("dataSize") or stats.get("storageSize") or 0
    index = stats.get("indexSize") or 0
    return int(data) + int(index)


async def ping(db: AsyncDatabase[Document]) -> None:
    await db.command("ping")


class TaskStatsRepository:
    """Read-only statistics over the engine's tasks, through its store: counts come
    from the maintained task index, durations from a bounded page of the newest
    Completed tasks (never an aggregate over history; DESIGN §3)."""

    def __init__(self, store: TaskReader) -> None:
        self.store = store

    async def recent_durations(
        self,
        *,
        kind: str | None = None,
        limit: int = 50,
        standalone: bool = False,
    ) -> list[float]:
        # A kind filter looks a little further back for enough samples, still bounded.
        wanted = limit if kind is None else min(limit * 4, 400)
        key = self.store.index.key(status=COMPLETED, standalone=standalone)
        ids = await self.store.index.page(key, 0, wanted)
        docs = await self.store.get_many(ids)
        out: list[float] = []
        for task_id in ids:
            doc = docs.get(task_id)
            if doc is None or (kind is not None and doc.get("kind") != kind):
                continue
            started, completed = doc.get("started_at"), doc.get("completed_at")
            if started is None or completed is None:
                continue
            out.append(max(0.0, (completed - started).total_seconds()))
            if len(out) >= limit:
                break
        return out

    async def standalone_counts(self) -> dict[str, int]:
        """Tasks that are workflows of their own (not part of a batch), by status."""
        counts = await self.store.status_counts(standalone=True)
        return {status: n for status, n in counts.items() if n}
