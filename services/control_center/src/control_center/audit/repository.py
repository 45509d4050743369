"""The ``audit_logs`` collection (``_id`` = the event id, so ingestion is idempotent)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from provisioning_common.mongo import Document, IndexSpec, ensure_indexes

_DUPLICATE_KEY = 11000
# ``GET /audit/logs``: newest first (timestamp, then id) with an optional filter on
# one of these fields (MongoDB; new names, since an index's keys cannot change).
INDEXES = (
    IndexSpec((("timestamp", -1), ("_id", -1)), "timestamp_id"),
    *(
        IndexSpec(((name, 1), ("timestamp", -1), ("_id", -1)), f"{name}_timestamp_id")
        for name in ("user_id", "action", "resource")
    ),
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

    async def insert_many(self, docs: Sequence[dict[str, Any]]) -> list[bool]:
        """Insert all in one unordered command; per document, False when a record
        with its id already existed (or came earlier in ``docs``)."""
        if not docs:
            return []
        try:
            await self.collection.insert_many([dict(d) for d in docs], ordered=False)
        except BulkWriteError as exc:
            duplicates: set[int] = set()
            for error in exc.details.get("writeErrors", []):
                if error.get("code") != _DUPLICATE_KEY:
                    raise
                duplicates.add(int(error.get("index", -1)))
            return [i not in duplicates for i in range(len(docs))]
        return [True] * len(docs)

    async def search(
        self, query: dict[str, Any], limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        total = await self.collection.count_documents(query)
        cursor = self.collection.find(query).sort([("timestamp", -1), ("_id", -1)])
        return [d async for d in cursor.skip(offset).limit(limit)], total
