"""The only code that touches ``operations_ledger``, ``checkpoints``,
``rollbacks`` and ``rollback_claims``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from orchestrator.engine.model import TaskStatus
from provisioning_common.mongo import Document, IndexSpec, claim, ensure_indexes

LEDGER = "operations_ledger"
CHECKPOINTS = "checkpoints"
ROLLBACKS = "rollbacks"
CLAIMS = "rollback_claims"


class RollbackRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.ledger = db[LEDGER]
        self.checkpoints = db[CHECKPOINTS]
        self.rollbacks = db[ROLLBACKS]
        self.claims = db[CLAIMS]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(
            self.ledger,
            [
                IndexSpec([("applied_at", DESCENDING), ("_id", DESCENDING)], "applied_at_id_desc"),
                IndexSpec([("batch_id", ASCENDING)], "batch"),
            ],
        )
        await ensure_indexes(
            self.checkpoints,
            [
                IndexSpec([("created_at", DESCENDING), ("_id", DESCENDING)], "created_at_id_desc"),
            ],
        )
        await ensure_indexes(
            self.rollbacks,
            [
                IndexSpec([("started_at", DESCENDING)], "started_at_desc"),
                IndexSpec([("status", ASCENDING)], "status"),
            ],
        )

    # --- ledger -----------------------------------------------------------------

    async def record_applied(self, entry: Mapping[str, Any]) -> bool:
        """Insert a ledger entry keyed by its task id: recording twice (two
        replicas, a restart) is a harmless duplicate."""
        return await claim(self.ledger, entry)

    async def list_ledger(self, offset: int, limit: int) -> tuple[list[Document], int]:
        total = await self.ledger.count_documents({})
        cursor = (
            self.ledger.find({})
            .sort([("applied_at", DESCENDING), ("_id", DESCENDING)])
            .skip(offset)
            .limit(limit)
        )
        return [d async for d in cursor], total

    async def ledger_entries(self, ids: Sequence[str]) -> list[Document]:
        # One point read each: FerretDB reads the whole (growing) ledger for ``$in``.
        docs = await asyncio.gather(*(self.ledger.find_one({"_id": i}) for i in dict.fromkeys(ids)))
        return [d for d in docs if d is not None]

    async def ledger_after(self, position: datetime) -> list[Document]:
        cursor = self.ledger.find({"applied_at": {"$gt": position}}).sort(
            [("applied_at", DESCENDING), ("_id", DESCENDING)]
        )
        return [d async for d in cursor]

    async def ledger_count(self, until: datetime | None = None) -> int:
        query: dict[str, Any] = {} if until is None else {"applied_at": {"$lte": until}}
        return await self.ledger.count_documents(query)

    async def mark_compensated(self, entry_id: str, rollback_id: str, at: datetime) -> None:
        await self.ledger.update_one(
            {"_id": entry_id}, {"$set": {"compensated_by": rollback_id, "compensated_at": at}}
        )

    # --- checkpoints ----------------------------------------------------------

    async def insert_checkpoint(self, doc: Mapping[str, Any]) -> None:
        await self.checkpoints.insert_one(dict(doc))

    async def get_checkpoint(
        self, checkpoint_id: str, *, with_state: bool = False
    ) -> Document | None:
        projection = None if with_state else {"state": 0}
        return await self.checkpoints.find_one({"_id": checkpoint_id}, projection)

    async def list_checkpoints(self, offset: int, limit: int) -> tuple[list[Document], int]:
        total = await self.checkpoints.count_documents({})
        cursor = (
            self.checkpoints.find({}, {"state": 0})
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .skip(offset)
            .limit(limit)
        )
        return [d async for d in cursor], total

    async def count_checkpoints(self) -> int:
        return await self.checkpoints.count_documents({})

    # --- rollbacks ------------------------------------------------------------

    async def insert_rollback(self, doc: Mapping[str, Any]) -> None:
        await self.rollbacks.insert_one(dict(doc))

    async def update_rollback(self, rollback_id: str, fields: Mapping[str, Any]) -> None:
        await self.rollbacks.update_one({"_id": rollback_id}, {"$set": dict(fields)})

    async def finished_rollbacks(self) -> list[Document]:
        cursor = self.rollbacks.find(
            {"status": {"$in": [TaskStatus.COMPLETED, TaskStatus.FAILED]}},
            {"success": 1, "duration": 1},
        )
        return [d async for d in cursor]

    async def count_rollbacks(self) -> int:
        return await self.rollbacks.count_documents({})

    async def claim(self, key: str, owner: str, at: datetime) -> bool:
        return await claim(self.claims, {"_id": key, "owner": owner, "at": at})

    async def note_compensation_failed(self, entry_id: str, attempts: int) -> None:
        # Only the holder of this entry's compensation claim writes here.
        await self.ledger.update_one(
            {"_id": entry_id}, {"$set": {"compensation_attempts": attempts}}
        )

    async def mark_restored(self, checkpoint_id: str, at: datetime) -> None:
        await self.checkpoints.update_one(
            {"_id": checkpoint_id}, {"$set": {"last_restored_at": at}}
        )

    async def record_rollback(self, doc: Mapping[str, Any]) -> bool:
        """Insert once (batch rollbacks are recorded by whichever replica finishes them)."""
        return await claim(self.rollbacks, doc)
