"""Progress, ETA and size rules for the state endpoints. Pure code, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from orchestrator.engine.model import COMPLETED, FINAL_STATUSES, PENDING, RUNNING, wire_status
from provisioning_common.timeutil import as_utc

# A workflow is a task or a batch: both have the contract's task statuses.
FINISHED = FINAL_STATUSES


class Health(StrEnum):
    """A component's health, and the overall one (``GET /state/system/health``)."""

    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    UNHEALTHY = "Unhealthy"


HEALTHY = Health.HEALTHY
DEGRADED = Health.DEGRADED
UNHEALTHY = Health.UNHEALTHY


def mean(values: Iterable[float]) -> float | None:
    items = list(values)
    return sum(items) / len(items) if items else None


def task_remaining(task: Mapping[str, Any], expected: float | None, now: datetime) -> float | None:
    """Seconds left for one task given the mean duration of earlier tasks of its kind."""
    status = task.get("status")
    if status in FINISHED:
        return 0.0
    if expected is None:
        return None
    if status == RUNNING and task.get("started_at"):
        elapsed = (now - as_utc(task["started_at"])).total_seconds()
        by_progress = expected * (1 - float(task.get("progress") or 0.0) / 100.0)
        return max(0.0, min(by_progress, expected - elapsed) if elapsed < expected else by_progress)
    return expected


def task_progress(task: Mapping[str, Any], expected: float | None, now: datetime) -> dict[str, Any]:
    """A task's progress (``ProgressOut`` dumps it)."""
    status = task.get("status")
    progress = 100.0 if status == COMPLETED else float(task.get("progress") or 0.0)
    remaining = task_remaining(task, expected, now)
    return {
        "workflow_id": str(task["_id"]),
        "type": "task",
        "status": status,
        "progress": round(progress, 1),
        "current_step": task.get("current_step")
        or (task.get("name") if status == RUNNING else None),
        "total_steps": 1,
        "completed_steps": 1 if status in FINISHED else 0,
        "estimated_time_remaining": None if remaining is None else round(remaining),
    }


def batch_progress(
    batch: Mapping[str, Any],
    tasks: Sequence[Mapping[str, Any]],
    expected_by_kind: Mapping[str, float | None],
    now: datetime,
) -> dict[str, Any]:
    """A batch's progress over its tasks (``ProgressOut`` dumps it)."""
    run_ids = [t for op in batch["operations"] for t in op["task_ids"]]
    by_id = {str(t["_id"]): t for t in tasks}
    total = len(run_ids)
    done = 0
    share = 0.0
    remaining: list[float] = []
    unknown = False
    current = None
    for tid in run_ids:
        task = by_id.get(tid)
        if task is None:
            continue
        status = task["status"]
        if status in FINISHED:
            done += 1
            share += 1.0
            continue
        if status == RUNNING:
            share += float(task.get("progress") or 0.0) / 100.0
            current = current or task.get("current_step") or task.get("name")
        left = task_remaining(task, expected_by_kind.get(str(task.get("kind"))), now)
        if left is None:
            unknown = True
        else:
            remaining.append(left)
    finished_batch = batch["status"] in FINISHED
    parallel = max(1, min(int(batch.get("parallel_limit") or 1), max(1, total - done)))
    eta: float | None
    if finished_batch:
        eta = 0.0
    elif unknown and not remaining:
        eta = None
    else:
        # Work left spread over the slots the batch may use at once.
        eta = sum(remaining) / parallel
    progress = 100.0 if batch["status"] == COMPLETED else (100.0 * share / total if total else 0.0)
    return {
        "workflow_id": str(batch["_id"]),
        "type": "batch",
        "status": batch["status"],
        "progress": round(progress, 1),
        "current_step": current,
        "total_steps": total,
        "completed_steps": done,
        "estimated_time_remaining": None if eta is None else round(eta),
    }


def task_snapshots(
    task: Mapping[str, Any], attempts: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """A task's status changes, from its document and its attempt history
    (``SnapshotOut`` dumps them)."""
    out: list[dict[str, Any]] = [
        {
            "snapshot_id": f"{task['_id']}:created",
            "timestamp": task["created_at"],
            "state": wire_status(PENDING),
            "details": {"name": task.get("name"), "command": task.get("command")},
        }
    ]
    for att in sorted(attempts, key=lambda a: int(a.get("attempt") or 0)):
        out.append(
            {
                "snapshot_id": f"{task['_id']}:{att.get('attempt')}:running",
                "timestamp": att.get("started_at"),
                "state": wire_status(RUNNING),
                "details": {"attempt": att.get("attempt"), "worker_id": att.get("worker_id")},
            }
        )
        ended = att.get("status")
        if att.get("ended_at") and ended and ended != RUNNING and ended != task.get("status"):
            out.append(
                {
                    "snapshot_id": f"{task['_id']}:{att.get('attempt')}:{str(ended).lower()}",
                    "timestamp": att["ended_at"],
                    "state": str(ended).lower(),
                    "details": {
                        "attempt": att.get("attempt"),
                        "exit_code": att.get("exit_code"),
                        "error": att.get("error"),
                    },
                }
            )
    if task.get("status") in FINISHED:
        out.append(
            {
                "snapshot_id": f"{task['_id']}:final",
                "timestamp": task.get("completed_at") or task.get("created_at"),
                "state": str(task["status"]).lower(),
                "details": {
                    "error": task.get("error"),
                    "attempts": task.get("attempts"),
                    "progress": task.get("progress"),
                },
            }
        )
    return out


def format_size(size: int) -> str:
    """Bytes as the contract shows them (``"245MB"``), one decimal below 10."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            text = f"{value:.1f}" if value < 10 and unit != "B" else f"{value:.0f}"
            return f"{text}{unit}"
        value /= 1024
    return f"{size}B"  # pragma: no cover


def overall_status(components: Mapping[str, str]) -> Health:
    states = set(components.values())
    if states == {HEALTHY}:
        return HEALTHY
    if components.get("storage") == UNHEALTHY:
        return UNHEALTHY
    return DEGRADED
