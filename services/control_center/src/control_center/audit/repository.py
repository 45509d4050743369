"""The ``audit_logs`` collection (``_id`` = the event id, so ingestion is idempotent)
and the chain's collections (:class:`ChainRepository`)."""

from __future__ import annotations

import asyncio
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

    async def get(self, record_id: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"_id": record_id})

    async def get_many(self, record_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """Point reads by ``_id``, concurrently (one page of a chain walk)."""
        return list(await asyncio.gather(*(self.get(i) for i in record_ids)))

    async def search(
        self, query: dict[str, Any], limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        total = await self.collection.count_documents(query)
        cursor = self.collection.find(query).sort([("timestamp", -1), ("_id", -1)])
        return [d async for d in cursor.skip(offset).limit(limit)], total


HEAD_ID = "head"


def marker_id(record_id: str) -> str:
    return f"event:{record_id}"


class ChainRepository:
    """The chain of audit records, read and written by exact ``_id`` only (DESIGN §3).

    * ``audit_chain``: ``_id`` = ``seq`` (an int), ``{id, prev_hash, hash}``, each
      followed by a membership marker ``_id`` = ``"event:<record id>"`` in the same
      insert (no extra round trip), which tells a retried ingestion whether a record
      stored earlier was chained (a crash between the two inserts) without a scan. The unique
      ``_id`` decides which record gets a sequence number: a writer inserts
      ``head + 1, head + 2...`` in one ordered ``insert_many``; a concurrent writer that
      took one of them makes ours stop with a duplicate-key error at that entry (the
      entries before it are ours and linked to the head we read), and we re-read the
      head and chain the rest after it. Two writers can never both own a ``seq``, and
      an ordered insert leaves no hole, so the chain cannot fork or reorder.
    * ``audit_chain_state``: ``{_id: "head", seq, hash}``, a hint of the chain's tip,
      overwritten after each append. It never decides anything (on FerretDB two
      overwrites may even let it go back a little); writers and the verifier probe
      forward from it by ``_id``. It never runs ahead of the chain, so a head beyond
      the last record means the tail was removed.
    * ``audit_checkpoints``: ``_id`` = checkpoint number ``1, 2...`` (unique inserts
      again), ``{seq, hash, signed_at, kid, signature}``."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.chain = db["audit_chain"]
        self.state = db["audit_chain_state"]
        self.checkpoints = db["audit_checkpoints"]

    async def ensure_indexes(self) -> None:
        """Only ``_id`` is queried."""

    async def insert_links(self, docs: Sequence[dict[str, Any]]) -> int:
        """Insert chain documents in order; how many were inserted before the first
        duplicate ``_id`` (all of them when none)."""
        if not docs:
            return 0
        try:
            await self.chain.insert_many([dict(d) for d in docs], ordered=True)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if not errors or any(e.get("code") != _DUPLICATE_KEY for e in errors):
                raise
            return int(min(int(e.get("index", 0)) for e in errors))
        return len(docs)

    async def link_at(self, seq: int) -> dict[str, Any] | None:
        return await self.chain.find_one({"_id": seq})

    async def chained(self, record_ids: Sequence[str]) -> list[bool]:
        """Per record id, whether its membership marker exists (point reads)."""
        found = await asyncio.gather(
            *(self.chain.find_one({"_id": marker_id(i)}) for i in record_ids)
        )
        return [doc is not None for doc in found]

    async def links(self, seqs: Sequence[int]) -> list[dict[str, Any] | None]:
        return list(await asyncio.gather(*(self.link_at(s) for s in seqs)))

    async def head(self) -> dict[str, Any] | None:
        return await self.state.find_one({"_id": HEAD_ID})

    async def set_head(self, seq: int, hash_: str) -> None:
        await self.state.replace_one({"_id": HEAD_ID}, {"seq": seq, "hash": hash_}, upsert=True)

    async def insert_checkpoint(self, number: int, doc: dict[str, Any]) -> bool:
        try:
            await self.checkpoints.insert_one({**doc, "_id": number})
        except DuplicateKeyError:
            return False
        return True

    async def checkpoint_at(self, number: int) -> dict[str, Any] | None:
        return await self.checkpoints.find_one({"_id": number})
