"""The only code that touches ``state_snapshots`` and reads database statistics."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from provisioning_common.mongo import Document, IndexSpec, claim, ensure_indexes

SNAPSHOTS = "state_snapshots"


class SnapshotRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.snapshots = db[SNAPSHOTS]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(
            self.snapshots,
            [
                IndexSpec([("workflow_id", ASCENDING), ("timestamp", ASCENDING)], "workflow_time"),
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
    """Read-only statistics over the engine's ``tasks`` collection (the engine's
    store owns its writes). Durations are computed in Python from a bounded
    sample: ``$avg`` and date arithmetic in ``$group`` are not portable (§3)."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.tasks = db["tasks"]

    async def recent_durations(
        self,
        *,
        kind: str | None = None,
        limit: int = 50,
        standalone: bool = False,
    ) -> list[float]:
        query: dict[str, Any] = {
            "status": "Completed",
            "started_at": {"$ne": None},
            "completed_at": {"$ne": None},
        }
        if kind is not None:
            query["kind"] = kind
        if standalone:
            query["batch_id"] = None
        cursor = (
            self.tasks.find(query, {"started_at": 1, "completed_at": 1})
            .sort([("completed_at", -1)])
            .limit(limit)
        )
        out = []
        async for doc in cursor:
            seconds = (doc["completed_at"] - doc["started_at"]).total_seconds()
            out.append(max(0.0, seconds))
        return out

    async def standalone_counts(self) -> dict[str, int]:
        """Tasks that are workflows of their own (not part of a batch), by status."""
        out: dict[str, int] = {}
        cursor = await self.tasks.aggregate(
            [
                {"$match": {"batch_id": None}},
                {"$group": {"_id": "$status", "n": {"$sum": 1}}},
            ]
        )
        async for row in cursor:
            out[str(row["_id"])] = int(row["n"])
        return out
