"""The ``users`` collection; usernames are unique case-insensitively (``username_key``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from provisioning_common.errors import Conflict
from provisioning_common.mongo import Document, IndexSpec, claim, ensure_indexes
from provisioning_common.timeutil import as_utc, utcnow

INDEXES = (
    IndexSpec((("username_key", 1),), "username_key_unique", unique=True),
    IndexSpec((("roles", 1), ("created_at", 1), ("_id", 1)), "roles_created_at_id"),
    IndexSpec((("enabled", 1), ("created_at", 1), ("_id", 1)), "enabled_created_at_id"),
    IndexSpec((("created_at", 1), ("_id", 1)), "created_at_id"),
)
ADMIN_LOCK = "admins"  # the one lease every admin-reducing change must hold


class UserRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection = db["users"]
        self.locks = db["user_locks"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self.collection, INDEXES)

    async def insert(self, doc: dict[str, Any]) -> None:
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError as exc:
            raise Conflict("A user with this username already exists") from exc

    async def get(self, user_id: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"_id": user_id})

    async def by_username_key(self, key: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"username_key": key})

    async def find_page(
        self, query: dict[str, Any], limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        total = await self.collection.count_documents(query)
        cursor = self.collection.find(query).sort([("created_at", 1), ("_id", 1)])
        items = [doc async for doc in cursor.skip(offset).limit(limit)]
        return items, total

    async def update(
        self, user_id: str, changes: dict[str, Any], unset: tuple[str, ...] = ()
    ) -> bool:
        update: dict[str, Any] = {}
        if changes:
            update["$set"] = changes
        if unset:
            update["$unset"] = dict.fromkeys(unset, "")
        if not update:
            return True
        result = await self.collection.update_one({"_id": user_id}, update)
        return result.matched_count == 1

    async def delete(self, user_id: str) -> bool:
        result = await self.collection.delete_one({"_id": user_id})
        return result.deleted_count == 1

    async def count_enabled_admins(self, excluding: str | None = None) -> int:
        query: dict[str, Any] = {"roles": "admin", "enabled": True}
        if excluding is not None:
            query["_id"] = {"$ne": excluding}
        return await self.collection.count_documents(query)

    async def lock_admins(self, holder: str, until: datetime) -> bool:
        """Take the admin-change lease (DESIGN §3: a unique ``_id`` insert decides);
        a lease whose holder died is dropped once it has expired, then contested again."""
        lease = {"_id": ADMIN_LOCK, "holder": holder, "until": until}
        if await claim(self.locks, lease):
            return True
        doc = await self.locks.find_one({"_id": ADMIN_LOCK})
        if doc is not None and as_utc(doc["until"]) <= utcnow():
            await self.locks.delete_one({"_id": ADMIN_LOCK, "holder": doc["holder"]})
            return await claim(self.locks, lease)
        return False

    async def unlock_admins(self, holder: str) -> None:
        await self.locks.delete_one({"_id": ADMIN_LOCK, "holder": holder})
