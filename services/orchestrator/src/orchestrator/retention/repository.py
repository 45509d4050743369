"""The only code that deletes for retention. Every task-side deletion is by exact
``{_id: value}`` (sent as one ``delete`` command per collection with one statement
per id), which FerretDB serves by primary key (DESIGN §3 cost rule); the
once-per-pass deletions of old events and outbox history are range filters, run off
the hot path.

Collections: the engine's ``tasks``, ``task_attempts``, ``task_finals``,
``task_cancels``, ``task_outputs`` and ``task_queue`` (through the handles of the
engine's task store, a :class:`~orchestrator.retention.ports.TaskStorePurge`, so their
names live in one place), ``events``, the outbox history collections
``<name>_history`` and ``retention_runs`` (``_id = "retention:<slot start>"``: one
document per pass, whose unique insert decides which replica runs it). Batches are read
by ``_id`` through the batch slice's repository (a
:class:`~orchestrator.retention.ports.BatchReader`), never written."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import DeleteOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from provisioning_common.mongo import Document, claim

from ..engine.model import attempt_id
from .model import attempt_numbers
from .ports import BatchReader, TaskStorePurge

EVENTS = "events"
RUNS = "retention_runs"
# The outboxes (``provisioning_common.outbox.Outbox(db, name, ...)``) by name: the
# audit trail and webhook deliveries; finished items move to ``<name>_history``.
OUTBOX_NAMES = ("audit", "webhook")


@dataclass(frozen=True, slots=True)
class Removed:
    tasks: int = 0
    attempts: int = 0


async def _delete_ids(collection: AsyncCollection[Document], ids: Sequence[str]) -> int:
    """Delete by exact ``_id``: one command, one point statement per id."""
    if not ids:
        return 0
    result = await collection.bulk_write([DeleteOne({"_id": i}) for i in ids], ordered=False)
    return int(result.deleted_count)


class RetentionRepository:
    def __init__(
        self, store: TaskStorePurge, db: AsyncDatabase[Document], batches: BatchReader
    ) -> None:
        self.store = store
        self.batches = batches
        self.events = db[EVENTS]
        self.runs = db[RUNS]
        self.history = tuple(db[f"{name}_history"] for name in OUTBOX_NAMES)

    # ------------------------------------------------------------ candidates
    async def oldest_task_ids(self, created_before: float, limit: int) -> list[str]:
        """The oldest task ids by creation time (Redis task index, no MongoDB scan)."""
        return await self.store.index.oldest(created_before, limit)

    async def tasks(self, ids: Iterable[str]) -> dict[str, Document]:
        return await self.store.get_many(ids)

    async def batch(self, batch_id: str) -> Document | None:
        return await self.batches.get(batch_id)

    # ----------------------------------------------------------------- tasks
    async def delete_tasks(self, tasks: Sequence[Mapping[str, Any]]) -> Removed:
        """Remove tasks and everything stored under their ids. The task documents go
        last: until then a retry (after a crash) finds the task again and finishes."""
        if not tasks:
            return Removed()
        ids = [str(t["_id"]) for t in tasks]
        attempts = [
            attempt_id(i, n) for i, t in zip(ids, tasks, strict=True) for n in attempt_numbers(t)
        ]
        store = self.store
        removed_attempts, *_ = await asyncio.gather(
            _delete_ids(store.attempts_col, attempts),
            _delete_ids(store.finals, ids),
            _delete_ids(store.cancels, ids),
            _delete_ids(store.outputs, ids),
            _delete_ids(store.queue, ids),
        )
        removed_tasks = await _delete_ids(store.tasks, ids)
        return Removed(tasks=removed_tasks, attempts=removed_attempts)

    async def forget(self, task_ids: Sequence[str], batch_ids: Iterable[str] = ()) -> None:
        """Drop tasks from the Redis task index (all sets, and their batches' sets) and
        the Redis copies of their cancel requests."""
        await self.store.index.forget(task_ids, batch_ids)
        await self.store.forget_cancel_copies(task_ids)

    # ----------------------------------------------------- once-per-pass history
    async def delete_events_before(self, id_floor: str) -> int:
        """Stored events whose id (20-digit ns timestamp first) sorts below ``id_floor``."""
        result = await self.events.delete_many({"_id": {"$lt": id_floor}})
        return int(result.deleted_count)

    async def delete_outbox_history_before(self, cutoff: datetime) -> int:
        """Finished outbox items created before ``cutoff``; a history collection that
        does not exist yet deletes nothing (and is not created)."""
        removed = 0
        for collection in self.history:
            result = await collection.delete_many({"created_at": {"$lt": cutoff}})
            removed += int(result.deleted_count)
        return removed

    # ------------------------------------------------------------------ runs
    async def claim_run(self, doc: Mapping[str, Any]) -> bool:
        return await claim(self.runs, doc)

    async def finish_run(self, run_id: str, fields: Mapping[str, Any]) -> None:
        # Only the replica that claimed the run writes it.
        await self.runs.update_one({"_id": run_id}, {"$set": dict(fields)})

    async def get_run(self, run_id: str) -> Document | None:
        return await self.runs.find_one({"_id": run_id})

    async def delete_runs_before(self, run_id: str) -> int:
        """Run records older than ``run_id`` (ids sort by time; a small collection)."""
        result = await self.runs.delete_many({"_id": {"$lt": run_id}})
        return int(result.deleted_count)
