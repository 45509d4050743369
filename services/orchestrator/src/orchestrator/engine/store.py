"""The only code touching the engine's collections: ``tasks``, ``task_attempts``
(``_id = <task_id>:<n>``), ``task_finals`` (``_id = <task_id>``: who decided the
final status), ``task_slots`` (``_id = <key>:slot:<n>``) and ``task_queue``
(``_id = <task_id>``: one small, immutable entry per task that is not final yet,
inserted with the task and deleted once it is final, so the scheduler never scans
``tasks``, which FerretDB reads in full for any filtered or sorted query) and
``task_outputs`` (``_id = <task_id>``: the kept output tail, so task documents stay
small; the task document holds only its last ``OUTPUT_SUMMARY_CHARS``).

Listing, filtering and counting tasks go through the :class:`TaskIndex` in Redis
(``index.py``), which this store keeps in step with every status it writes.

Contested changes are decided by :func:`provisioning_common.mongo.claim`; plain
updates are only made by the single writer that won the claim (DESIGN §3)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pymongo
from pymongo import ASCENDING, DeleteOne
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from provisioning_common.group_commit import GroupCommit
from provisioning_common.mongo import (
    Document,
    IndexSpec,
    claim,
    ensure_indexes,
    insert_new,
)
from provisioning_common.timeutil import utcnow

from .index import TaskIndex
from .model import FINAL_STATUSES, PENDING, RUNNING

log = logging.getLogger(__name__)

# What lists show of a task's output (the contract's list items carry ``output``); the
# whole kept tail is in ``task_outputs`` and shown by ``GET /tasks/{id}``.
OUTPUT_SUMMARY_CHARS = 1024
# Tasks are indexed just before they are inserted; an entry younger than this whose
# document is not there yet is a creation in flight, not a leftover.
_CREATION_GRACE_SECONDS = 60.0
_INDEX_FIELDS = {"_id": 1, "status": 1, "created_at": 1, "batch_id": 1, "metadata.owner": 1}

# Tasks are listed through the Redis index and read by ``_id``; on MongoDB ``status``
# serves the start-up queue sweep.
TASK_INDEXES = (IndexSpec([("status", ASCENDING)], "status"),)
ATTEMPT_INDEXES = (
    IndexSpec([("status", ASCENDING), ("lease_expires_at", ASCENDING)], "status_lease"),
    IndexSpec([("task_id", ASCENDING), ("attempt", ASCENDING)], "task_attempt"),
)
SLOT_INDEXES = (IndexSpec([("key", ASCENDING)], "key"), IndexSpec([("task_id", ASCENDING)], "task"))
QUEUE_INDEXES = (IndexSpec([("created_at", ASCENDING), ("_id", ASCENDING)], "created"),)
_QUEUE_FIELDS = ("created_at", "dependencies", "concurrency_key", "concurrency_limit")


def queue_entry(task: Mapping[str, Any]) -> Document:
    """What the scheduler needs to pick candidates without reading the task."""
    return {"_id": task["_id"], **{k: task.get(k) for k in _QUEUE_FIELDS}}


def output_summary(output: str | None) -> str | None:
    if output is None or len(output) <= OUTPUT_SUMMARY_CHARS:
        return output
    return output[-OUTPUT_SUMMARY_CHARS:]


_FULL_SCAN_SECONDS = 300.0
# How long Redis keeps its copy of a cancel request: longer than any task runs.
_CANCEL_COPY_SECONDS = 7 * 24 * 3600


class TaskStore:
    def __init__(
        self, db: AsyncDatabase[Document], redis: Redis, *, namespace: str | None = None
    ) -> None:
        self.db = db
        self.index = TaskIndex(redis, namespace or db.name)
        self.tasks = db["tasks"]
        self.outputs = db["task_outputs"]
        self.attempts_col = db["task_attempts"]
        self.finals = db["task_finals"]
        self.slots = db["task_slots"]
        self.cancels = db["task_cancels"]
        self.queue = db["task_queue"]
        self._task_inserts: GroupCommit[Document, bool] = GroupCommit(
            self._insert_task_group, name="task-inserts"
        )
        self._queue_inserts: GroupCommit[Document, bool] = GroupCommit(
            lambda entries: insert_new(self.queue, entries), name="queue-inserts"
        )
        # Claims stay decided by each document's unique insert: grouping them into one
        # unordered insert_many changes the round trips, not who wins.
        self._attempt_claims: GroupCommit[Document, bool] = GroupCommit(
            lambda docs: insert_new(self.attempts_col, docs), name="attempt-claims"
        )
        self._final_claims: GroupCommit[Document, bool] = GroupCommit(
            lambda docs: insert_new(self.finals, docs), name="final-claims"
        )
        # Updates are not grouped: FerretDB v1 holds a SQLite connection per statement of
        # a multi-statement ``update`` until the command ends, and about 100 statements
        # in flight exhaust its pool for good.

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self.tasks, TASK_INDEXES)
        await ensure_indexes(self.attempts_col, ATTEMPT_INDEXES)
        await ensure_indexes(self.slots, SLOT_INDEXES)
        await ensure_indexes(self.queue, QUEUE_INDEXES)

    # ------------------------------------------------------------------ tasks
    async def insert_tasks(self, docs: Sequence[Document]) -> list[str]:
        """Insert all, return the ids inserted; an already existing ``_id``
        (deterministic ids re-derived by another replica) is not an error. Concurrent
        callers share one write (group commit)."""
        written = await self._task_inserts.submit(docs)
        return [str(d["_id"]) for d, new in zip(docs, written, strict=True) if new]

    async def _insert_task_group(self, docs: list[Document]) -> list[bool | Exception]:
        # Indexed first: a creator that dies after the insert leaves a task the index
        # knows as Pending, so the queue sweep finds it; an entry whose insert never
        # happened is dropped by the first reader. Indexing an existing task changes
        # nothing (only a final status replaces what the index holds).
        await self._mirror(self.index.add(docs))
        return await insert_new(self.tasks, docs)

    async def _mirror(self, write: Any) -> None:
        """MongoDB has the change already: a failed index write marks the index for a
        rebuild instead of failing the caller."""
        try:
            await write
        except Exception as exc:
            log.warning("task index write failed (%s); it will be rebuilt", type(exc).__name__)

    async def get(self, task_id: str) -> Document | None:
        return await self.tasks.find_one({"_id": task_id})

    async def get_output(self, task_id: str) -> str | None:
        doc = await self.outputs.find_one({"_id": task_id})
        return None if doc is None else doc.get("output")

    async def get_many(self, ids: Iterable[str]) -> dict[str, Document]:
        # One point read per id: FerretDB serves an ``_id`` equality from the primary
        # key but reads the whole collection for ``$in``.
        docs = await asyncio.gather(*(self.get(i) for i in set(ids)))
        return {d["_id"]: d for d in docs if d is not None}

    # ------------------------------------------------------------------ queue
    async def enqueue(self, entries: Sequence[Document]) -> None:
        await self._queue_inserts.submit(entries)

    async def queue_entries(self, limit: int) -> list[Document]:
        cursor = self.queue.find({}).sort([("created_at", ASCENDING), ("_id", ASCENDING)])
        return [d async for d in cursor.limit(limit)]

    async def dequeue(self, task_id: str) -> None:
        await self.queue.delete_one({"_id": task_id})

    async def dequeue_many(self, task_ids: Iterable[str]) -> None:
        # One command of exact-``_id`` deletes: FerretDB serves each from the primary
        # key, where one ``$in`` filter would read the whole queue.
        ids = sorted(set(task_ids))
        if len(ids) == 1:
            await self.dequeue(ids[0])
        elif ids:
            await self.queue.bulk_write([DeleteOne({"_id": i}) for i in ids], ordered=False)

    async def unfinished_tasks(self) -> list[Document]:
        """Pending/Running tasks (queue repair): found through the index, confirmed by
        point reads, so the cost follows the work in flight, not the history."""
        docs = await self.get_many(await self.indexed_unfinished())
        return [
            {"_id": d["_id"], **{k: d.get(k) for k in _QUEUE_FIELDS}}
            for d in docs.values()
            if d["status"] in (PENDING, RUNNING)
        ]

    async def unfinished_tasks_scan(self) -> list[Document]:
        """Pending/Running tasks by a full read of ``tasks``: once per replica start, for
        a task whose creator died while the index could not be written."""
        # On FerretDB this reads the whole history before its first answer: longer than
        # the client's per-operation bound is fine here, once, off the hot path.
        with pymongo.timeout(_FULL_SCAN_SECONDS):
            cursor = self.tasks.find(
                {"status": {"$in": [PENDING, RUNNING]}}, {k: 1 for k in _QUEUE_FIELDS}
            )
            return [d async for d in cursor]

    async def queued_ids(self) -> set[str]:
        return {d["_id"] async for d in self.queue.find({}, {"_id": 1})}

    async def list_tasks(
        self,
        *,
        status: str | None = None,
        batch_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Document]:
        """Newest first: a page of ids from the index, then one point read each."""
        if batch_id is not None:
            docs = await self.find_by_batch(batch_id)
            docs = [d for d in reversed(docs) if status is None or d["status"] == status]
            return docs[offset : offset + limit]
        key = self.index.key(status=status)
        entries = await self.index.page_with_scores(key, offset, limit)
        ids = [task_id for task_id, _ in entries]
        found = await self.get_many(ids)
        # An entry without a document: a creation in flight (indexed first) or a task
        # gone. Only one older than any creation could be is dropped.
        settled = utcnow().timestamp() - _CREATION_GRACE_SECONDS
        stale = [i for i, score in entries if i not in found and score < settled]
        if stale:
            await self._mirror(self.index.forget(stale))
        out: list[Document] = []
        for task_id in ids:
            doc = found.get(task_id)
            if doc is None:
                continue
            if status is not None and doc["status"] != status:
                if doc["status"] in FINAL_STATUSES:
                    # A final status never changes: the entry can be put right safely.
                    await self._mirror(self.index.move(task_id, str(doc["status"])))
                continue
            out.append(doc)
        return out

    async def count(self, *, status: str | None = None, batch_id: str | None = None) -> int:
        if batch_id is not None:
            docs = await self.find_by_batch(batch_id)
            return sum(1 for d in docs if status is None or d["status"] == status)
        return await self.index.count(self.index.key(status=status))

    async def status_counts(self, *, standalone: bool = False) -> dict[str, int]:
        return await self.index.counts(standalone=standalone)

    async def recent(self, status: str, limit: int) -> list[Document]:
        """The newest ``limit`` tasks with ``status`` (a bounded page)."""
        return await self.list_tasks(status=status, limit=limit)

    async def find_by_batch(self, batch_id: str) -> list[Document]:
        """A batch's tasks, oldest first (a batch's size is bounded)."""
        raw = await self.index.redis.zrange(self.index.batch_key(batch_id), 0, -1)
        ids = [r.decode() if isinstance(r, bytes) else str(r) for r in raw]
        found = await self.get_many(ids)
        return [found[i] for i in ids if i in found]

    async def update_task(self, task_id: str, fields: Mapping[str, Any]) -> None:
        changes = dict(fields)
        if "output" in changes:
            output = changes["output"]
            await self.outputs.update_one(
                {"_id": task_id}, {"$set": {"output": output}}, upsert=True
            )
            changes["output"] = output_summary(output)
        try:
            await self.tasks.update_one({"_id": task_id}, {"$set": changes})
        except BaseException:
            # It may have been applied: the index cannot tell, so it is rebuilt.
            if "status" in changes:
                self.index.dirty = True
            raise
        if "status" in changes:
            await self._mirror(self.index.move(task_id, str(changes["status"])))

    # ------------------------------------------------------------- the index
    async def rebuild_index_if_needed(self, worker_id: str) -> bool:
        """Rebuild the task index from MongoDB when it is missing or a write to it
        failed (a full read of ``tasks``: rare, off the hot path)."""
        if not await self.index.needs_rebuild():
            return False
        return await self.index.rebuild(self._index_source(), worker_id)

    async def _index_source(self) -> AsyncIterator[Document]:
        async for doc in self.tasks.find({}, _INDEX_FIELDS):
            yield doc

    async def indexed_unfinished(self) -> list[str]:
        """Ids the index holds as Pending or Running (bounded by in-flight work)."""
        ids: list[str] = []
        for status in (PENDING, RUNNING):
            key = self.index.key(status=status)
            raw = await self.index.redis.zrange(key, 0, -1)
            ids.extend(r.decode() if isinstance(r, bytes) else str(r) for r in raw)
        return ids

    async def increment_released(self, task_id: str) -> None:
        # Only the attempt owner hands its task back, so this has one writer.
        await self.tasks.update_one({"_id": task_id}, {"$inc": {"released": 1}})

    # Cancel requests live in their own collection (``task_cancels``, ``_id`` = task id):
    # on FerretDB an update is read-then-overwrite, so a second writer on the task
    # document could undo the owner's status write.
    # A copy of each request in Redis lets owners look for requests often at no cost to
    # MongoDB; MongoDB stays the truth (``cancel_requests(..., fast=False)``), read
    # less often and whenever Redis cannot answer.
    def _cancel_key(self, task_id: str) -> str:
        return f"{self.index.prefix}:cancel:{task_id}"

    async def request_cancel(self, task_id: str, reason: str, now: datetime) -> None:
        await claim(self.cancels, {"_id": task_id, "reason": reason, "requested_at": now})
        try:
            await self.index.redis.set(self._cancel_key(task_id), reason, ex=_CANCEL_COPY_SECONDS)
        except Exception as exc:  # the owner finds it in MongoDB on its next full read
            log.warning("could not copy a cancel request to Redis: %s", type(exc).__name__)

    async def forget_cancel_copies(self, task_ids: Sequence[str]) -> None:
        """Drop Redis's copies of requests for tasks removed by retention, so a task
        created again under the same id is not taken for cancelled."""
        if task_ids:
            await self.index.redis.delete(*(self._cancel_key(i) for i in task_ids))

    async def cancel_requests(
        self, task_ids: Iterable[str], *, fast: bool = True
    ) -> dict[str, str]:
        ids = sorted(set(task_ids))
        if not ids:
            return {}
        if fast:
            try:
                values = await self.index.redis.mget([self._cancel_key(i) for i in ids])
                return {
                    i: (v.decode() if isinstance(v, bytes) else str(v))
                    for i, v in zip(ids, values, strict=True)
                    if v is not None
                }
            except Exception as exc:
                log.debug("cancel requests from MongoDB (Redis: %s)", type(exc).__name__)
        docs = await asyncio.gather(*(self.cancels.find_one({"_id": i}) for i in ids))
        return {d["_id"]: str(d.get("reason") or "Cancelled") for d in docs if d is not None}

    # --------------------------------------------------------------- attempts
    async def claim_attempt(self, doc: Document) -> bool:
        return (await self._attempt_claims.submit([doc]))[0]

    async def attempts(self, task_id: str) -> list[Document]:
        cursor = self.attempts_col.find({"task_id": task_id}).sort("attempt", ASCENDING)
        return [d async for d in cursor]

    async def get_attempt(self, aid: str) -> Document | None:
        return await self.attempts_col.find_one({"_id": aid})

    async def update_attempt(self, aid: str, fields: Mapping[str, Any]) -> None:
        await self.attempts_col.update_one({"_id": aid}, {"$set": dict(fields)})

    async def renew_leases(self, aids: Sequence[str], expires: datetime, now: datetime) -> None:
        # One update per attempt: FerretDB reads the whole collection for ``$in``.
        fields = {"$set": {"lease_expires_at": expires, "heartbeat_at": now}}
        await asyncio.gather(*(self.attempts_col.update_one({"_id": a}, fields) for a in aids))

    async def existing_attempts(self, aids: Sequence[str]) -> set[str]:
        docs = await asyncio.gather(
            *(self.attempts_col.find_one({"_id": a}, {"_id": 1}) for a in set(aids))
        )
        return {d["_id"] for d in docs if d is not None}

    # ----------------------------------------------------------------- finals
    async def claim_final(self, doc: Document) -> bool:
        return (await self._final_claims.submit([doc]))[0]

    async def get_final(self, task_id: str) -> Document | None:
        return await self.finals.find_one({"_id": task_id})

    async def get_finals(self, task_ids: Iterable[str]) -> dict[str, Document]:
        docs = await asyncio.gather(*(self.get_final(i) for i in set(task_ids)))
        return {d["_id"]: d for d in docs if d is not None}

    async def get_attempts(self, aids: Iterable[str]) -> dict[str, Document]:
        docs = await asyncio.gather(*(self.get_attempt(a) for a in set(aids)))
        return {d["_id"]: d for d in docs if d is not None}

    # ------------------------------------------------------------------ slots
    async def slots_for_key(self, key: str) -> list[Document]:
        return [d async for d in self.slots.find({"key": key})]

    async def all_slots(self) -> list[Document]:
        """Every held slot (a small collection: one document per running grouped task)."""
        return [d async for d in self.slots.find({})]

    async def slot_of_task(self, task_id: str) -> Document | None:
        return await self.slots.find_one({"task_id": task_id})

    async def claim_slot(self, doc: Document) -> bool:
        return await claim(self.slots, doc)

    async def delete_expired_slot(self, sid: str, lease_expires_at: datetime) -> None:
        await self.slots.delete_one({"_id": sid, "lease_expires_at": lease_expires_at})

    async def adopt_slot(self, sid: str, fields: Mapping[str, Any]) -> None:
        await self.slots.update_one({"_id": sid}, {"$set": dict(fields)})

    async def renew_slots(self, sids: Sequence[str], expires: datetime) -> None:
        fields = {"$set": {"lease_expires_at": expires}}
        await asyncio.gather(*(self.slots.update_one({"_id": s}, fields) for s in sids))

    async def release_slot(self, sid: str, task_id: str) -> None:
        await self.slots.delete_one({"_id": sid, "task_id": task_id})
