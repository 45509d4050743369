"""Checkpoint and rollback rules. Pure code, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import bson

from orchestrator.engine.model import TaskStatus
from orchestrator.state.model import mean

# ``metadata.purpose`` of an engine task: a batch's own work, or a compensation
# that undoes an applied task (created by an automatic or a requested rollback).
PURPOSE_RUN = "run"
PURPOSE_COMPENSATION = "compensation"

# A rollback's status (a batch's automatic ``rollback.status`` and a requested rollback's
# record) is one of the contract's task statuses: Running until its compensations have
# finished, then Completed or Failed. Active ones are still looked after.
ACTIVE_STATUSES = frozenset({TaskStatus.PENDING, TaskStatus.RUNNING})


def state_size(state: Mapping[str, Any]) -> int:
    """Bytes the recorded state takes (its BSON encoding, as stored)."""
    return len(bson.encode(dict(state)))


def newest_first(entries: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(entries, key=lambda e: (e["applied_at"], str(e["_id"])), reverse=True)


def statistics(
    total_checkpoints: int, total_rollbacks: int, finished: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    ok = sum(1 for r in finished if r.get("success"))
    avg = mean(float(r.get("duration") or 0.0) for r in finished)
    return {
        "total_checkpoints": total_checkpoints,
        "total_rollbacks": total_rollbacks,
        "success_rate": round(100.0 * ok / len(finished), 1) if finished else 100.0,
        "average_rollback_time": round(avg, 2) if avg is not None else 0.0,
    }
