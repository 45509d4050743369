"""Read-only task queries: what ``/tasks`` and ``/ws`` show of tasks. Writes (create,
cancel) go through the engine."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from .ports import Document, PendingCounter, TaskRecords


class TaskQueries:
    def __init__(self, records: TaskRecords, pending: PendingCounter) -> None:
        self.records = records
        self.pending = pending

    async def page(self, status: str | None, limit: int, offset: int) -> tuple[list[Document], int]:
        """A page of tasks, newest first, and how many match in all."""
        items, total = await asyncio.gather(
            self.records.list_tasks(status=status, limit=limit, offset=offset),
            self.records.count(status=status),
        )
        return items, total

    async def summary(self, task_id: str) -> Document | None:
        """The task document as stored (its output is a summary)."""
        return await self.records.get(task_id)

    async def summaries(self, task_ids: Iterable[str]) -> dict[str, Document]:
        """Task id -> document, for those that exist."""
        return await self.records.get_many(task_ids)

    async def unfinished_of(self, owner: str) -> int:
        """How many of ``owner``'s tasks are Pending or Running."""
        return await self.pending.unfinished_of(owner)

    async def detail(self, task_id: str) -> Document | None:
        """The task with the whole kept output tail, which lives beside the document."""
        doc, output = await asyncio.gather(
            self.records.get(task_id), self.records.get_output(task_id)
        )
        if doc is None:
            return None
        return {**doc, "output": output if output is not None else doc.get("output")}

    async def attempts(self, task_id: str) -> list[Document] | None:
        """The task's attempts, oldest first; None when there is no such task."""
        if await self.records.get(task_id) is None:
            return None
        return await self.records.attempts(task_id)
