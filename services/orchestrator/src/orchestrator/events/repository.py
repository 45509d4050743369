"""The only code touching the ``events`` collection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from provisioning_common.mongo import Document, IndexSpec, ensure_indexes


class EventRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.events = db["events"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self.events, [IndexSpec([("event_type", ASCENDING)], "type")])

    async def insert(self, wire: Mapping[str, Any]) -> None:
        doc = {k: v for k, v in wire.items() if k != "id"}
        doc["_id"] = wire["id"]
        await self.events.insert_one(doc)

    async def insert_many(self, wires: Sequence[Mapping[str, Any]]) -> None:
        docs = []
        for wire in wires:
            doc = {k: v for k, v in wire.items() if k != "id"}
            doc["_id"] = wire["id"]
            docs.append(doc)
        if docs:
            await self.events.insert_many(docs, ordered=True)

    async def exists(self, event_id: str) -> bool:
        return await self.events.find_one({"_id": event_id}, {"_id": 1}) is not None

    async def since(
        self, event_id: str, event_types: Sequence[str] | None, limit: int
    ) -> list[dict[str, Any]]:
        query: Document = {"_id": {"$gt": event_id}}
        if event_types:
            query["event_type"] = {"$in": list(event_types)}
        cursor = self.events.find(query).sort("_id", ASCENDING).limit(limit)
        return [_wire(d) async for d in cursor]


def _wire(doc: Document) -> dict[str, Any]:
    return {
        "id": doc["_id"],
        "event_type": doc["event_type"],
        "timestamp": doc["timestamp"],
        "data": doc.get("data") or {},
        "metadata": doc.get("metadata") or {},
    }
