"""Batch planning: a submission's operations validated as a DAG, the plan
``/batch/plan`` shows, and the batch document a submission stores. Pure code, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from provisioning_common.errors import UnprocessableEntity

from . import model
from .model import PENDING, DagError, Operation, TaskSpec


def parse_operations(data: Mapping[str, Any]) -> list[Operation]:
    """The operations of a validated body; 422 when they do not form a DAG."""
    ops = [Operation.from_dict(o) for o in data["operations"]]
    try:
        model.check_dag(ops)
    except DagError as exc:
        raise UnprocessableEntity(
            str(exc), details={"operations": [str(exc)], "path": exc.path}
        ) from exc
    return ops


def plan(data: Mapping[str, Any], cli: str) -> dict[str, Any]:
    """Validation plus what would run; nothing is stored."""
    ops = parse_operations(data)
    preview_id = "plan"
    specs = model.expand_batch(preview_id, ops)
    by_op: dict[str, list[dict[str, Any]]] = {op.id: [] for op in ops}
    for spec in specs:
        item = spec.to_dict(cli)
        item.pop("operation_id")
        item.pop("kind")
        # Ids in a plan are placeholders: execution assigns its own.
        item["id"] = f"{spec.operation_id}#{len(by_op[spec.operation_id]) + 1}"
        by_op[spec.operation_id].append(item)
    ids = {s.id: f"{s.operation_id}#{n}" for s, n in _numbered(specs)}
    for items in by_op.values():
        for item in items:
            item["dependencies"] = [ids[d] for d in item["dependencies"]]
    return {
        "name": data["name"],
        "version": data["version"],
        "parallel_limit": data["parallel_limit"],
        "rollback_enabled": data["rollback_enabled"],
        "storage_backend": data["storage_backend"],
        "total_tasks": len(specs),
        "waves": model.waves(ops),
        "operations": [
            {
                "id": op.id,
                "type": op.type,
                "dependencies": list(op.dependencies),
                "tasks": by_op[op.id],
            }
            for op in ops
        ],
    }


def _numbered(specs: Sequence[TaskSpec]) -> list[tuple[TaskSpec, int]]:
    seen: dict[str, int] = {}
    out = []
    for s in specs:
        seen[s.operation_id] = seen.get(s.operation_id, 0) + 1
        out.append((s, seen[s.operation_id]))
    return out


def new_batch(
    data: Mapping[str, Any],
    ops: Sequence[Operation],
    batch_id: str,
    created_by: str | None,
    now: datetime,
) -> tuple[dict[str, Any], list[TaskSpec]]:
    """The batch document as first stored, and the tasks it expands to."""
    specs = model.expand_batch(batch_id, ops)
    op_docs = []
    for op in ops:
        doc = op.to_dict()
        doc.update(
            task_ids=[s.id for s in specs if s.operation_id == op.id],
            status=PENDING,
            progress=0.0,
            results=None,
        )
        op_docs.append(doc)
    return batch_document(data, batch_id, created_by, now, op_docs, len(specs)), specs


def batch_document(
    data: Mapping[str, Any],
    batch_id: str,
    created_by: str | None,
    now: datetime,
    op_docs: list[dict[str, Any]],
    total_tasks: int,
) -> dict[str, Any]:
    """A new batch run's document, Pending, from the submitted (or the original
    run's) ``name``, ``version``, ``storage_backend``, ``parallel_limit`` and
    ``rollback_enabled``."""
    return {
        "_id": batch_id,
        "name": data["name"],
        "version": data["version"],
        "storage_backend": data.get("storage_backend") or "mongodb",
        "parallel_limit": data["parallel_limit"],
        "rollback_enabled": bool(data.get("rollback_enabled")),
        "created_by": created_by,
        "created_at": now,
        "started_at": None,
        "completed_at": None,
        "status": PENDING,
        "tasks_created": False,
        "cancel_requested": False,
        "rolled_back": False,
        "rollback": None,
        "total_tasks": total_tasks,
        "finished_tasks": 0,
        "operations": op_docs,
    }


def specs_of(batch: Mapping[str, Any]) -> list[TaskSpec]:
    """The tasks a stored batch expands to (deterministic ids: the same as at submission)."""
    ops = [Operation.from_dict(o) for o in batch["operations"]]
    return model.expand_batch(batch["_id"], ops)
