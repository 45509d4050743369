"""What the tasks slice reads from the engine's store (``TaskStore`` is one), so that the
slice does not import the engine's repository."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

Document = dict[str, Any]


class TaskRecords(Protocol):
    async def get(self, task_id: str) -> Document | None: ...

    async def get_many(self, ids: Iterable[str]) -> dict[str, Document]: ...

    async def get_output(self, task_id: str) -> str | None: ...

    async def attempts(self, task_id: str) -> list[Document]: ...

    async def list_tasks(
        self, *, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[Document]: ...

    async def count(self, *, status: str | None = None) -> int: ...


class PendingCounter(Protocol):
    """The task index's count of a user's unfinished tasks."""

    async def unfinished_of(self, owner: str) -> int: ...
