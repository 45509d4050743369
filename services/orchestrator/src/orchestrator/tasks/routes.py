"""``/tasks``: list, get, cancel, attempts."""

from __future__ import annotations

import re

from aiohttp import web

from provisioning_common.envelope import ok
from provisioning_common.errors import Conflict, NotFound
from provisioning_common.openapi import api_doc
from provisioning_common.pagination import paginated, parse_listing

from ..audit import record_action
from ..auth import authorize
from ..deps import container_of
from .schemas import AttemptView, TaskQuery, TaskView

routes = web.RouteTableDef()
_TASK = TaskView()
_TASKS = TaskView(many=True)
_ATTEMPTS = AttemptView(many=True)

_TASK_ID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


async def _task_id(request: web.Request, action: str) -> str:
    """Authorize on the task, then 404 for a malformed id (never reaches the database)."""
    raw = request.match_info["id"]
    valid = bool(_TASK_ID.match(raw))
    await authorize(request, action, f"tasks:{raw.lower()}" if valid else "tasks:*")
    if not valid:
        raise NotFound("Task not found")
    return raw.lower()


@routes.get("/tasks")
@api_doc(
    summary="List tasks, newest first",
    tags=["tasks"],
    query=TaskQuery,
    response=TaskView,
    many=True,
)
async def list_tasks(request: web.Request) -> web.Response:
    await authorize(request, "read", "tasks:*")
    page, query = parse_listing(request, TaskQuery())
    items, total = await container_of(request).tasks.page(
        query.get("status"), page.limit, page.offset
    )
    return paginated(request, _TASKS.dump(items), total, page)


@routes.get("/tasks/{id}")
@api_doc(summary="Get a task", tags=["tasks"], response=TaskView)
async def get_task(request: web.Request) -> web.Response:
    task_id = await _task_id(request, "read")
    task = await container_of(request).tasks.detail(task_id)
    if task is None:
        raise NotFound("Task not found")
    return ok(_TASK.dump(task))


@routes.get("/tasks/{id}/attempts")
@api_doc(
    summary="A task's attempts (claims, takeovers, retries)",
    tags=["tasks"],
    response=AttemptView,
    responses={200: "The attempts, oldest first"},
)
async def get_attempts(request: web.Request) -> web.Response:
    task_id = await _task_id(request, "read")
    attempts = await container_of(request).tasks.attempts(task_id)
    if attempts is None:
        raise NotFound("Task not found")
    return ok(_ATTEMPTS.dump(attempts))


@routes.post("/tasks/{id}/cancel")
@api_doc(
    summary="Cancel a task (Pending: at once; Running: SIGTERM then SIGKILL)",
    tags=["tasks"],
    responses={409: "The task has already finished"},
)
async def cancel_task(request: web.Request) -> web.Response:
    task_id = await _task_id(request, "cancel")
    result = await container_of(request).engine.cancel(task_id, reason="Cancelled by user")
    if result == "not_found":
        raise NotFound("Task not found")
    if result == "final":
        raise Conflict("Task has already finished")
    await record_action(request, "cancel", f"tasks:{task_id}", details={"outcome": result})
    return ok("Task cancelled" if result == "cancelled" else "Task cancellation requested")
