"""Signing keys in MongoDB (local runs): one document per generation, ``_id`` =
``gen:<n>``, so that two replicas generating or rotating at once cannot both win."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from provisioning_common.mongo import Document, IndexSpec, claim, ensure_indexes
from provisioning_common.timeutil import utcnow


class KeyRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection = db["signing_keys"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(
            self.collection, (IndexSpec((("generation", -1),), "generation_desc"),)
        )

    async def recent(self, count: int) -> list[dict[str, Any]]:
        cursor = self.collection.find({}).sort("generation", -1).limit(count)
        return [doc async for doc in cursor]

    async def claim_generation(self, generation: int, kid: str, private_pem: str) -> bool:
        return await claim(
            self.collection,
            {
                "_id": f"gen:{generation}",
                "generation": generation,
                "kid": kid,
                "private_pem": private_pem,
                "created_at": utcnow(),
            },
        )
