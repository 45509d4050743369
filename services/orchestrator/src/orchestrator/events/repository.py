"""The only code touching the ``events`` collection and the ``event_inbox``.

``events`` is history (bounded by retention): on the hot path it is only inserted
into; :meth:`EventRepository.since` reads a page of it off the hot path (a ``/ws``
replay older than the Redis replay stream, ``events/replay.py``).

``event_inbox`` is bounded by in-flight work (``storage_rules.ORCHESTRATOR_BOUNDED``):
the publisher inserts the events the webhooks feature asked for (same document as in
``events``), the webhook scan reads it oldest first and deletes each entry by ``_id``
once its deliveries are enqueued, so it is empty when nothing is in flight."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from provisioning_common.mongo import Document, IndexSpec, ensure_indexes


class EventRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.events = db["events"]
        self.inbox = db["event_inbox"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self.events, [IndexSpec([("event_type", ASCENDING)], "type")])

    async def insert(self, wire: Mapping[str, Any]) -> None:
        await self.events.insert_one(_doc(wire))

    async def insert_many(self, wires: Sequence[Mapping[str, Any]]) -> None:
        docs = [_doc(wire) for wire in wires]
        if docs:
            await self.events.insert_many(docs, ordered=True)

    async def exists(self, event_id: str) -> bool:
        return await self.events.find_one({"_id": event_id}, {"_id": 1}) is not None

    async def since(
        self, event_id: str, event_types: Sequence[str] | None, limit: int
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` stored events after ``event_id`` (of ``event_types``), oldest
        first: a scan of history, so never on a hot path."""
        query: Document = {"_id": {"$gt": event_id}}
        if event_types:
            query["event_type"] = {"$in": list(event_types)}
        cursor = self.events.find(query).sort("_id", ASCENDING).limit(limit)
        return [_wire(d) async for d in cursor]

    # ------------------------------------------------------------ event_inbox

    async def insert_inbox(self, wires: Sequence[Mapping[str, Any]]) -> None:
        """Queue events for the webhook scan (the same documents as in ``events``)."""
        docs = [_doc(wire) for wire in wires]
        if len(docs) == 1:
            await self.inbox.insert_one(docs[0])
        elif docs:
            await self.inbox.insert_many(docs, ordered=True)

    async def inbox_page(self, limit: int) -> list[dict[str, Any]]:
        """The oldest ``limit`` inbox entries (a bounded collection: cheap anywhere)."""
        cursor = self.inbox.find({}).sort("_id", ASCENDING).limit(limit)
        return [_wire(d) async for d in cursor]

    async def remove_from_inbox(self, event_id: str) -> None:
        await self.inbox.delete_one({"_id": event_id})


def _doc(wire: Mapping[str, Any]) -> Document:
    doc = {k: v for k, v in wire.items() if k != "id"}
    doc["_id"] = wire["id"]
    return doc


def _wire(doc: Document) -> dict[str, Any]:
    return {
        "id": doc["_id"],
        "event_type": doc["event_type"],
        "timestamp": doc["timestamp"],
        "data": doc.get("data") or {},
        "metadata": doc.get("metadata") or {},
    }
