"""The only code touching the engine's collections: ``tasks``, ``task_attempts``
(``_id = <task_id>:<n>``), ``task_finals`` (``_id = <task_id>``: who decided the
final status) and ``task_slots`` (``_id = <key>:slot:<n>``).

Contested changes are decided by :func:`provisioning_common.mongo.claim`; plain
updates are only made by the single writer that won the claim (DESIGN §3)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from provisioning_common.mongo import Document, IndexSpec, claim, ensure_indexes

from .model import RUNNING

TASK_INDEXES = (
    IndexSpec([("created_at", DESCENDING), ("_id", DESCENDING)], "created_desc"),
    IndexSpec([("status", ASCENDING), ("created_at", ASCENDING)], "status_created"),
    IndexSpec([("batch_id", ASCENDING)], "batch"),
)
ATTEMPT_INDEXES = (
    IndexSpec([("status", ASCENDING), ("lease_expires_at", ASCENDING)], "status_lease"),
    IndexSpec([("task_id", ASCENDING), ("attempt", ASCENDING)], "task_attempt"),
)
SLOT_INDEXES = (IndexSpec([("key", ASCENDING)], "key"), IndexSpec([("task_id", ASCENDING)], "task"))


class TaskStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.tasks = db["tasks"]
        self.attempts_col = db["task_attempts"]
        self.finals = db["task_finals"]
        self.slots = db["task_slots"]
        self.cancels = db["task_cancels"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self.tasks, TASK_INDEXES)
        await ensure_indexes(self.attempts_col, ATTEMPT_INDEXES)
        await ensure_indexes(self.slots, SLOT_INDEXES)

    # ------------------------------------------------------------------ tasks
    async def insert_tasks(self, docs: Sequence[Document]) -> None:
        """Insert all; an already existing ``_id`` (deterministic ids re-derived by
        another replica) is not an error."""
        if not docs:
            return
        try:
            await self.tasks.insert_many([dict(d) for d in docs], ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise

    async def get(self, task_id: str) -> Document | None:
        return await self.tasks.find_one({"_id": task_id})

    async def get_many(self, ids: Iterable[str]) -> dict[str, Document]:
        wanted = list(set(ids))
        if not wanted:
            return {}
        return {d["_id"]: d async for d in self.tasks.find({"_id": {"$in": wanted}})}

    def _filter(self, status: str | None, batch_id: str | None) -> Document:
        query: Document = {}
        if status is not None:
            query["status"] = status
        if batch_id is not None:
            query["batch_id"] = batch_id
        return query

    async def list_tasks(
        self,
        *,
        status: str | None = None,
        batch_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Document]:
        cursor = (
            self.tasks.find(self._filter(status, batch_id))
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .skip(offset)
            .limit(limit)
        )
        return [d async for d in cursor]

    async def count(self, *, status: str | None = None, batch_id: str | None = None) -> int:
        query = self._filter(status, batch_id)
        if not query:
            return await self.tasks.estimated_document_count()
        return await self.tasks.count_documents(query)

    async def find_by_batch(self, batch_id: str) -> list[Document]:
        return [d async for d in self.tasks.find({"batch_id": batch_id}).sort("created_at", 1)]

    async def pending_candidates(self, limit: int, offset: int = 0) -> list[Document]:
        cursor = (
            self.tasks.find({"status": "Pending"})
            .sort([("status", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)])
            .skip(offset)
            .limit(limit)
        )
        return [d async for d in cursor]

    async def update_task(self, task_id: str, fields: Mapping[str, Any]) -> None:
        await self.tasks.update_one({"_id": task_id}, {"$set": dict(fields)})

    async def increment_released(self, task_id: str) -> None:
        # Only the attempt owner hands its task back, so this has one writer.
        await self.tasks.update_one({"_id": task_id}, {"$inc": {"released": 1}})

    # Cancel requests live in their own collection (``task_cancels``, ``_id`` = task id):
    # on FerretDB an update is read-then-overwrite, so a second writer on the task
    # document could undo the owner's status write.
    async def request_cancel(self, task_id: str, reason: str, now: datetime) -> None:
        await claim(self.cancels, {"_id": task_id, "reason": reason, "requested_at": now})

    async def cancel_requests(self, task_ids: Iterable[str]) -> dict[str, str]:
        ids = list(set(task_ids))
        if not ids:
            return {}
        cursor = self.cancels.find({"_id": {"$in": ids}})
        return {d["_id"]: str(d.get("reason") or "Cancelled") async for d in cursor}

    # --------------------------------------------------------------- attempts
    async def claim_attempt(self, doc: Document) -> bool:
        return await claim(self.attempts_col, doc)

    async def attempts(self, task_id: str) -> list[Document]:
        cursor = self.attempts_col.find({"task_id": task_id}).sort("attempt", ASCENDING)
        return [d async for d in cursor]

    async def get_attempt(self, aid: str) -> Document | None:
        return await self.attempts_col.find_one({"_id": aid})

    async def update_attempt(self, aid: str, fields: Mapping[str, Any]) -> None:
        await self.attempts_col.update_one({"_id": aid}, {"$set": dict(fields)})

    async def renew_leases(self, aids: Sequence[str], expires: datetime, now: datetime) -> None:
        if aids:
            await self.attempts_col.update_many(
                {"_id": {"$in": list(aids)}},
                {"$set": {"lease_expires_at": expires, "heartbeat_at": now}},
            )

    async def existing_attempts(self, aids: Sequence[str]) -> set[str]:
        if not aids:
            return set()
        cursor = self.attempts_col.find({"_id": {"$in": list(aids)}}, {"_id": 1})
        return {d["_id"] async for d in cursor}

    async def expired_attempts(self, now: datetime, limit: int) -> list[Document]:
        cursor = (
            self.attempts_col.find({"status": RUNNING, "lease_expires_at": {"$lt": now}})
            .sort("lease_expires_at", ASCENDING)
            .limit(limit)
        )
        return [d async for d in cursor]

    # ----------------------------------------------------------------- finals
    async def claim_final(self, doc: Document) -> bool:
        return await claim(self.finals, doc)

    async def get_final(self, task_id: str) -> Document | None:
        return await self.finals.find_one({"_id": task_id})

    # ------------------------------------------------------------------ slots
    async def slots_for_key(self, key: str) -> list[Document]:
        return [d async for d in self.slots.find({"key": key})]

    async def slot_of_task(self, task_id: str) -> Document | None:
        return await self.slots.find_one({"task_id": task_id})

    async def claim_slot(self, doc: Document) -> bool:
        return await claim(self.slots, doc)

    async def delete_expired_slot(self, sid: str, lease_expires_at: datetime) -> None:
        await self.slots.delete_one({"_id": sid, "lease_expires_at": lease_expires_at})

    async def adopt_slot(self, sid: str, fields: Mapping[str, Any]) -> None:
        await self.slots.update_one({"_id": sid}, {"$set": dict(fields)})

    async def renew_slots(self, sids: Sequence[str], expires: datetime) -> None:
        if sids:
            await self.slots.update_many(
                {"_id": {"$in": list(sids)}}, {"$set": {"lease_expires_at": expires}}
            )

    async def release_slot(self, sid: str, task_id: str) -> None:
        await self.slots.delete_one({"_id": sid, "task_id": task_id})
