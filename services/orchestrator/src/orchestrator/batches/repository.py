"""The only code that touches the ``batches``, ``batch_claims`` and ``batches_active``
collections. ``batches_active`` (``_id`` = batch id) holds the batches the coordinator
still looks after, so its passes read a collection bounded by work in flight instead
of every batch ever submitted (DESIGN §3 cost rule)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from orchestrator.rollback.model import ACTIVE_STATUSES as ACTIVE_ROLLBACK_STATUSES
from provisioning_common.mongo import Document, IndexSpec, claim, ensure_indexes

from .model import FAILED, FINISHED

BATCHES = "batches"
CLAIMS = "batch_claims"
ACTIVE = "batches_active"
# A failed batch whose automatic rollback is not (or no longer) on its document:
# not started yet, or its record was lost to a concurrent update (DESIGN §3).
_ROLLBACK_UNRECORDED = {"status": FAILED, "rollback_enabled": True, "rollback": None}
_ROLLBACK_ACTIVE = {"rollback.status": {"$in": sorted(ACTIVE_ROLLBACK_STATUSES)}}


class BatchRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.batches = db[BATCHES]
        self.claims = db[CLAIMS]
        self.active_set = db[ACTIVE]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(
            self.batches,
            [
                IndexSpec([("created_at", DESCENDING), ("_id", DESCENDING)], "created_at_id_desc"),
                IndexSpec(
                    [("status", ASCENDING), ("created_at", DESCENDING)], "status_created_at_desc"
                ),
                IndexSpec([("rollback.status", ASCENDING)], "rollback_status"),
            ],
        )

    async def insert(self, doc: Mapping[str, Any]) -> None:
        await self.batches.insert_one(dict(doc))
        await self.activate(str(doc["_id"]))

    async def activate(self, batch_id: str) -> None:
        await claim(self.active_set, {"_id": batch_id})

    async def deactivate(self, batch_id: str) -> None:
        await self.active_set.delete_one({"_id": batch_id})

    async def active_set_ids(self) -> list[str]:
        """What the coordinator polls: a collection bounded by batches in flight."""
        return [str(d["_id"]) async for d in self.active_set.find({}, {"_id": 1})]

    async def get(self, batch_id: str) -> Document | None:
        return await self.batches.find_one({"_id": batch_id})

    async def page(self, offset: int, limit: int) -> tuple[list[Document], int]:
        total = await self.batches.count_documents({})
        cursor = (
            self.batches.find({}, {"snapshot_state": 0})
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .skip(offset)
            .limit(limit)
        )
        return [doc async for doc in cursor], total

    async def all(self) -> list[Document]:
        return [doc async for doc in self.batches.find({})]

    async def active(self) -> list[Document]:
        """Batches the coordinator still has to look after: unfinished ones and
        finished ones whose rollback has not completed."""
        cursor = self.batches.find(
            {
                "$or": [
                    {"status": {"$nin": sorted(FINISHED)}},
                    _ROLLBACK_ACTIVE,
                    _ROLLBACK_UNRECORDED,
                ]
            }
        )
        return [doc async for doc in cursor]

    async def active_ids(self) -> list[str]:
        """Every batch that is active by its document (a full read of ``batches``: only
        at start-up, to mark a batch whose creator died before marking it)."""
        cursor = self.batches.find(
            {
                "$or": [
                    {"status": {"$nin": sorted(FINISHED)}},
                    _ROLLBACK_ACTIVE,
                    _ROLLBACK_UNRECORDED,
                ]
            },
            {"_id": 1},
        )
        return [doc["_id"] async for doc in cursor]

    async def running_ids(self) -> list[str]:
        cursor = self.batches.find({"status": {"$nin": sorted(FINISHED)}}, {"_id": 1})
        return [doc["_id"] async for doc in cursor]

    async def recent_finished(self, limit: int) -> list[Document]:
        cursor = (
            self.batches.find(
                {"status": {"$in": sorted(FINISHED)}}, {"started_at": 1, "completed_at": 1}
            )
            .sort([("created_at", DESCENDING)])
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def update(self, batch_id: str, fields: Mapping[str, Any]) -> None:
        # FerretDB applies this as read-then-overwrite of the whole document, so a
        # concurrent update of other fields can undo it (DESIGN §3). Fields the
        # coordinator writes are therefore written again by its next pass: derived
        # from the tasks, or the rollback record, whose truth is its claim document.
        await self.batches.update_one({"_id": batch_id}, {"$set": dict(fields)})

    async def count_by_status(self) -> dict[str, int]:
        out: dict[str, int] = {}
        cursor = await self.batches.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}])
        async for row in cursor:
            out[str(row["_id"])] = int(row["n"])
        return out

    async def replace_all(self, docs: Sequence[Mapping[str, Any]]) -> None:
        """Restore: bring back exactly ``docs`` (batches created later disappear)."""
        keep = [d["_id"] for d in docs]
        await self.batches.delete_many({"_id": {"$nin": keep}})
        for doc in docs:
            await self.batches.replace_one({"_id": doc["_id"]}, dict(doc), upsert=True)

    async def claim(
        self, key: str, owner: str, at: datetime, record: Mapping[str, Any] | None = None
    ) -> bool:
        doc: dict[str, Any] = {"_id": key, "owner": owner, "at": at}
        if record is not None:
            doc["record"] = dict(record)
        return await claim(self.claims, doc)

    async def claimed_record(self, key: str) -> Document | None:
        """The record stored with a claim. Claims are inserted once and never
        updated, so this copy survives a lost update of the batch document."""
        doc = await self.claims.find_one({"_id": key})
        record = doc.get("record") if doc is not None else None
        return dict(record) if isinstance(record, Mapping) else None

    async def has_claim(self, key: str) -> bool:
        # A point read by _id: FerretDB serves it without reading the collection.
        return await self.claims.find_one({"_id": key}, {"_id": 1}) is not None

    async def delete_claims(self, batch_ids: Sequence[str]) -> None:
        # Claims are keyed "<batch_id>:..."; restore drops those of removed batches.
        for bid in batch_ids:
            await self.claims.delete_many({"_id": {"$regex": f"^{bid}:"}})
