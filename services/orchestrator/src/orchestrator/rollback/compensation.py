"""Which compensations undo what, and the engine tasks that run them: the plan of a
failed batch's automatic rollback and the task spec of any compensation (automatic
or requested through ``/rollback/execute``). Pure code, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from orchestrator.batches.model import task_id
from orchestrator.engine import TaskSpec as EngineTaskSpec
from orchestrator.engine.model import COMPLETED
from provisioning_common.timeutil import as_utc

from .model import PURPOSE_COMPENSATION


def task_owner(task: Mapping[str, Any]) -> str | None:
    """The owner of a task (its metadata's, else a ledger entry's own field)."""
    metadata = task.get("metadata")
    owner = metadata.get("owner") if isinstance(metadata, Mapping) else task.get("owner")
    return str(owner) if owner else None


def compensation_plan(
    batch: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]]
) -> list[tuple[Mapping[str, Any], str]]:
    """(completed run task, compensation task id), newest first: the operations
    that completed, newest completion first, each task newest first."""
    done_ops = [op for op in batch["operations"] if op.get("status") == COMPLETED]
    items: list[tuple[datetime, Mapping[str, Any]]] = []
    for op in done_ops:
        for tid in op["task_ids"]:
            task = tasks.get(tid)
            if task and task["status"] == COMPLETED and task.get("compensation"):
                items.append((as_utc(task["completed_at"]), task))
    items.sort(key=lambda pair: (pair[0], str(pair[1]["_id"])), reverse=True)
    return [
        (task, task_id(batch["_id"], str(task["operation_id"]), i, "compensate"))
        for i, (_, task) in enumerate(items)
    ]


def compensation_spec(
    task: Mapping[str, Any],
    comp_id: str,
    previous: str | None,
    *,
    batch_id: str | None,
    rollback_id: str,
    owner: str | None = None,
) -> EngineTaskSpec:
    """The engine task that undoes ``task``, after ``previous`` (one at a time)."""
    comp = task["compensation"]
    noun = comp["subcommand"][0] if comp["subcommand"] else "task"
    return EngineTaskSpec(
        name=f"rollback:{task.get('name') or task['_id']}",
        subcommand=tuple(comp["subcommand"]),
        args=tuple(comp.get("args") or ()),
        # Chained: compensations run one at a time, newest first.
        dependencies=(previous,) if previous else (),
        task_id=comp_id,
        batch_id=batch_id,
        operation_id=task.get("operation_id"),
        kind=f"{noun}.delete",
        metadata={
            "purpose": PURPOSE_COMPENSATION,
            "compensates": str(task["_id"]),
            "rollback_id": rollback_id,
            # Whoever runs the rollback owns its tasks (the batch's owner, automatically).
            "owner": owner if owner is not None else task_owner(task),
        },
    )
