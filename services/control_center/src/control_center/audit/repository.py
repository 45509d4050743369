"""The ``audit_logs`` collection (``_id`` = the event id, so ingestion is idempotent)."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from provisioning_common.mongo import Document, IndexSpec, ensure_indexes

INDEXES = (
    IndexSpec((("timestamp", -1),), "timestamp"),
    IndexSpec((("user_id", 1), ("timestamp", -1)), "user_timestamp"),
    IndexSpec((("action", 1), ("timestamp", -1)), "action_timestamp"),
)


class AuditRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection = db["audit_logs"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self.collection, INDEXES)

    async def insert(self, doc: dict[str, Any]) -> bool:
        """False when a record with this id already exists."""
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def search(
        self, query: dict[str, Any], limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        total = await self.collection.count_documents(query)
        cursor = self.collection.find(query).sort([("timestamp", -1), ("_id", -1)])
        return [d async for d in cursor.skip(offset).limit(limit)], total
