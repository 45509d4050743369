"""The outbox's three collections and every query on them that is not a delivery
step: indexes, reads for listings (off the hot path), and the bulk writes by exact
``_id`` that the delivery path uses (see the package docstring for the layout)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, DeleteOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from ..mongo import Document, IndexSpec, claim, ensure_indexes
from ..timeutil import as_utc
from .model import MAX_ATTEMPT_LOG

_READ_CONCURRENCY = 16
_DUPLICATE_KEY = 11000
_NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]


@dataclass(frozen=True, slots=True)
class OutboxCollections:
    """Items to deliver in ``<name>_outbox``, finished ones in ``<name>_history``,
    attempts in ``<name>_attempts``."""

    items: AsyncCollection[Document]
    history: AsyncCollection[Document]
    attempts: AsyncCollection[Document]

    @classmethod
    def of(cls, db: AsyncDatabase[Document], name: str) -> OutboxCollections:
        return cls(db[f"{name}_outbox"], db[f"{name}_history"], db[f"{name}_attempts"])

    async def ensure_indexes(self, history_indexes: Sequence[IndexSpec]) -> None:
        """For MongoDB: the poll (``next_attempt_at``) and the listings (newest
        first). Attempt records are read by ``_id`` only."""
        await ensure_indexes(
            self.items,
            [
                IndexSpec([("next_attempt_at", ASCENDING)], "due_at"),
                IndexSpec([("created_at", DESCENDING)], "created"),
            ],
        )
        await ensure_indexes(self.history, [IndexSpec(_NEWEST_FIRST, "created"), *history_indexes])

    async def get(self, item_id: str) -> Document | None:
        """The item's current state: its outbox copy while in flight, else its history."""
        live = await self.items.find_one({"_id": item_id})
        if live is not None:
            return live
        return await self.history.find_one({"_id": item_id})

    async def find_items(
        self, query: Mapping[str, Any], *, limit: int, offset: int
    ) -> tuple[list[Document], int]:
        """Items matching ``query``, newest first, over both collections (an item in
        flight is represented by its outbox copy only). Off the hot path: it reads
        the bounded outbox whole and the history by a page."""
        in_flight = await self._in_flight_ids()
        live = await self.items.find(dict(query)).sort(_NEWEST_FIRST).to_list(None)
        past_query = _excluding(query, in_flight)
        # The history doc at rank r lands at rank r..r+len(live) once merged, so
        # the ones before ``base`` are before the page whatever ``live`` holds.
        base = max(0, offset - len(live))
        cursor = self.history.find(past_query).sort(_NEWEST_FIRST).skip(base)
        past = await cursor.limit(limit + len(live)).to_list(None)
        merged = sorted([*live, *past], key=_newest_key, reverse=True)
        start = offset - base
        total = len(live) + await self.history.count_documents(past_query)
        return merged[start : start + limit], total

    async def count(self, query: Mapping[str, Any]) -> int:
        """How many items match ``query`` (each item once). Off the hot path."""
        in_flight = await self._in_flight_ids()
        live = await self.items.count_documents(dict(query))
        return live + await self.history.count_documents(_excluding(query, in_flight))

    async def attempts_for(self, docs: Sequence[Mapping[str, Any]]) -> dict[str, list[Document]]:
        """The attempt records of these items (their newest :data:`MAX_ATTEMPT_LOG`),
        oldest first, read one ``_id`` each: an item's attempts are
        ``"<id>:0"`` .. ``"<id>:<seq>"``."""
        keys: list[tuple[str, str]] = []
        for doc in docs:
            item_id, seq = str(doc["_id"]), int(doc.get("seq", 0))
            first = max(0, seq + 1 - MAX_ATTEMPT_LOG)
            keys.extend((item_id, f"{item_id}:{n}") for n in range(first, seq + 1))
        gate = asyncio.Semaphore(_READ_CONCURRENCY)

        async def read(key: str) -> Document | None:
            async with gate:
                return await self.attempts.find_one({"_id": key})

        records = await asyncio.gather(*(read(key) for _, key in keys))
        found: dict[str, list[Document]] = {str(doc["_id"]): [] for doc in docs}
        for (item_id, _), record in zip(keys, records, strict=True):
            if record is not None:
                found[item_id].append(record)
        return found

    async def attempts_of(self, item_ids: list[str]) -> dict[str, list[Document]]:
        docs = [doc for doc in await asyncio.gather(*(self.get(i) for i in item_ids)) if doc]
        found = await self.attempts_for(docs)
        return {item_id: found.get(item_id, []) for item_id in item_ids}

    async def _in_flight_ids(self) -> list[Any]:
        return [doc["_id"] async for doc in self.items.find({}, {"_id": 1})]


def _newest_key(doc: Mapping[str, Any]) -> tuple[datetime, str]:
    return as_utc(doc["created_at"]), str(doc["_id"])


def _excluding(query: Mapping[str, Any], ids: list[Any]) -> Document:
    """``query`` and ``_id`` not in ``ids``."""
    if not ids:
        return dict(query)
    if "_id" in query:
        return {"$and": [dict(query), {"_id": {"$nin": ids}}]}
    return {**dict(query), "_id": {"$nin": ids}}


async def claim_many(collection: AsyncCollection[Document], docs: Sequence[Document]) -> list[bool]:
    """Insert each document (each with its ``_id``) in one unordered command; for
    each, True when this caller's insert won (as :func:`claim`, in bulk)."""
    if not docs:
        return []
    if len(docs) == 1:
        return [await claim(collection, docs[0])]
    try:
        await collection.insert_many([dict(doc) for doc in docs], ordered=False)
    except BulkWriteError as exc:
        lost: set[int] = set()
        for error in exc.details.get("writeErrors", []):
            if error.get("code") != _DUPLICATE_KEY:
                raise
            lost.add(int(error.get("index", -1)))
        return [i not in lost for i in range(len(docs))]
    return [True] * len(docs)


async def set_each(
    collection: AsyncCollection[Document], updates: Sequence[tuple[Any, Mapping[str, Any]]]
) -> None:
    """``$set`` by exact ``_id``, one ``update`` command each, concurrently (the client's
    pool bounds how many are in flight). Not one multi-statement command: FerretDB v1
    holds a SQLite connection per statement until such a command ends, and 100
    statements in flight exhaust its pool for good (``test_outbox_history``)."""
    await asyncio.gather(
        *(collection.update_one({"_id": i}, {"$set": dict(fields)}) for i, fields in updates)
    )


async def delete_each(collection: AsyncCollection[Document], ids: Sequence[Any]) -> None:
    """Exact-``_id`` deletes in one command (FerretDB closes each statement's read
    before it writes, so these do not pile up connections)."""
    if ids:
        await collection.bulk_write([DeleteOne({"_id": i}) for i in ids], ordered=False)
