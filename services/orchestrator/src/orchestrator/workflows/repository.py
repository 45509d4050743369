"""Idempotency keys of submissions (collection ``idempotency_keys``); the unique
``_id`` insert decides which request owns a key (DESIGN §3)."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from provisioning_common.mongo import Document, claim
from provisioning_common.timeutil import utcnow


class IdempotencyRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.keys = db["idempotency_keys"]

    async def claim(self, key_id: str, body_hash: str, task_id: str) -> bool:
        return await claim(
            self.keys,
            {"_id": key_id, "body_hash": body_hash, "task_id": task_id, "created_at": utcnow()},
        )

    async def get(self, key_id: str) -> Document | None:
        return await self.keys.find_one({"_id": key_id})

    async def release(self, key_id: str, task_id: str) -> None:
        await self.keys.delete_one({"_id": key_id, "task_id": task_id})
