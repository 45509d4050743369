"""``client.tasks``: workflow tasks and their attempts."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from typing import Any

from .._convert import from_dict, from_list
from ..models import Page, Task, TaskAttempt
from ._base import Resource


class TasksAPI(Resource):
    async def list(
        self,
        *,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Page[Task]:
        params = {"status": status, "limit": limit, "offset": offset}
        return await self._transport.page("orchestrator", "/tasks", Task, params)

    def iter(self, *, status: str | None = None, page_size: int = 100) -> AsyncIterator[Task]:
        return self._transport.iterate(
            "orchestrator", "/tasks", Task, {"status": status}, page_size
        )

    async def get(self, task_id: str) -> Task:
        return from_dict(
            Task, await self._transport.data("orchestrator", "GET", f"/tasks/{task_id}")
        )

    async def cancel(self, task_id: str) -> Any:
        return await self._transport.data("orchestrator", "POST", f"/tasks/{task_id}/cancel")

    async def attempts(self, task_id: str) -> builtins.list[TaskAttempt]:
        data = await self._transport.data("orchestrator", "GET", f"/tasks/{task_id}/attempts")
        return from_list(TaskAttempt, data)
