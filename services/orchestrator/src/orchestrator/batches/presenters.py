"""The batch resources as the API answers them (pure code, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .model import PENDING, Operation


def submitted_view(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The answer of ``/batch/execute`` for a stored batch (a repeated Idempotency-Key)."""
    return {
        "batch_id": batch["_id"],
        "status": batch["status"],
        "operations": [
            {
                "id": op["id"],
                "status": op.get("status", PENDING),
                "progress": float(op.get("progress") or 0.0),
            }
            for op in batch["operations"]
        ],
    }


def accepted_view(batch_id: str, status: str, ops: Sequence[Operation]) -> dict[str, Any]:
    """The answer of ``/batch/execute`` for the batch it has just submitted."""
    return {
        "batch_id": batch_id,
        "status": status,
        "operations": [{"id": op.id, "status": PENDING, "progress": 0.0} for op in ops],
    }


def batch_summary(batch: Mapping[str, Any]) -> dict[str, Any]:
    """A batch as ``/batch/operations`` and ``/batch/operations/{id}`` show it."""
    return {
        "batch_id": batch["_id"],
        "name": batch["name"],
        "version": batch.get("version"),
        "status": batch["status"],
        "storage_backend": batch.get("storage_backend"),
        "parallel_limit": batch.get("parallel_limit"),
        "rollback_enabled": batch.get("rollback_enabled", False),
        "rolled_back": batch.get("rolled_back", False),
        "rollback": batch.get("rollback"),
        "created_at": batch["created_at"],
        "started_at": batch.get("started_at"),
        "completed_at": batch.get("completed_at"),
        "operations": [
            {
                "id": op["id"],
                "type": op["type"],
                "dependencies": op.get("dependencies", []),
                "status": op.get("status", PENDING),
                "progress": float(op.get("progress") or 0.0),
                "results": {"task_ids": op.get("task_ids", []), **(op.get("results") or {})},
            }
            for op in batch["operations"]
        ],
    }
