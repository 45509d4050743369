"""The ``policies`` collection; names are unique."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from provisioning_common.errors import Conflict
from provisioning_common.mongo import Document, IndexSpec, claim, ensure_indexes

INDEXES = (
    IndexSpec((("name", 1),), "name_unique", unique=True),
    IndexSpec((("enabled", 1), ("created_at", 1), ("_id", 1)), "enabled_created_at_id"),
    IndexSpec((("created_at", 1), ("_id", 1)), "created_at_id"),
)


class PolicyRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection = db["policies"]
        self.markers = db["bootstrap"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self.collection, INDEXES)

    async def insert(self, doc: dict[str, Any]) -> None:
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError as exc:
            raise Conflict("A policy with this name already exists") from exc

    async def get(self, policy_id: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"_id": policy_id})

    async def find_page(
        self, query: dict[str, Any], limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        total = await self.collection.count_documents(query)
        cursor = self.collection.find(query).sort([("created_at", 1), ("_id", 1)])
        return [d async for d in cursor.skip(offset).limit(limit)], total

    async def all_enabled(self) -> list[dict[str, Any]]:
        return [d async for d in self.collection.find({"enabled": True})]

    async def update(self, policy_id: str, changes: dict[str, Any]) -> bool:
        try:
            result = await self.collection.update_one({"_id": policy_id}, {"$set": changes})
        except DuplicateKeyError as exc:
            raise Conflict("A policy with this name already exists") from exc
        return result.matched_count == 1

    async def delete(self, policy_id: str) -> bool:
        return (await self.collection.delete_one({"_id": policy_id})).deleted_count == 1

    async def claim_marker(self, name: str) -> bool:
        return await claim(self.markers, {"_id": name})

    async def has_marker(self, name: str) -> bool:
        return await self.markers.find_one({"_id": name}) is not None
