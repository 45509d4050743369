"""Task rules and documents: statuses, the spec a caller submits, and how a spec
becomes a stored document. Pure code, no I/O."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class TaskStatus(StrEnum):
    """The contract's task statuses; batches and rollbacks use the same set. Members
    are ``str``: they are stored, compared and serialised as their values."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class AttemptEnd(StrEnum):
    """What only an attempt can end as (besides the task statuses)."""

    LOST = "Lost"  # its owner stopped heartbeating; another attempt took over
    RELEASED = "Released"  # handed back at graceful shutdown
    TIMED_OUT = "TimedOut"


# Short names for the members, used throughout the engine.
PENDING = TaskStatus.PENDING
RUNNING = TaskStatus.RUNNING
COMPLETED = TaskStatus.COMPLETED
FAILED = TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED
STATUSES = tuple(TaskStatus)
FINAL_STATUSES = frozenset({COMPLETED, FAILED, CANCELLED})
ATTEMPT_LOST = AttemptEnd.LOST
ATTEMPT_RELEASED = AttemptEnd.RELEASED
ATTEMPT_TIMED_OUT = AttemptEnd.TIMED_OUT


@dataclass(frozen=True, slots=True)
class Compensation:
    """The argv tail that undoes a task (create → delete), used by rollback."""

    subcommand: tuple[str, ...]
    args: tuple[str, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        return {"subcommand": list(self.subcommand), "args": list(self.args)}


@dataclass(frozen=True, slots=True)
class TaskSpec:
    name: str
    subcommand: tuple[str, ...]
    args: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    task_id: str | None = None
    batch_id: str | None = None
    operation_id: str | None = None
    kind: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    compensation: Compensation | None = None
    timeout_seconds: float | None = None
    max_attempts: int | None = None
    retries: int = 0
    metadata: Mapping[str, Any] | None = field(default=None)


@dataclass(frozen=True, slots=True)
class Defaults:
    cli: str
    timeout_seconds: float
    max_attempts: int


def new_task_id() -> str:
    return str(uuid.uuid4())


def command_string(cli: str, subcommand: Sequence[str]) -> str:
    """The contract's ``command`` field: ``"<cli> <verb> <noun>"``."""
    return " ".join([cli, *subcommand])


def task_document(spec: TaskSpec, defaults: Defaults, now: datetime) -> dict[str, Any]:
    if not spec.subcommand:
        raise ValueError("a task needs a subcommand")
    if spec.concurrency_key is not None and (spec.concurrency_limit or 0) < 1:
        raise ValueError("concurrency_limit must be >= 1 when concurrency_key is set")
    task_id = spec.task_id or new_task_id()
    return {
        "_id": task_id,
        "name": spec.name,
        "command": command_string(defaults.cli, spec.subcommand),
        "subcommand": list(spec.subcommand),
        "args": list(spec.args),
        "dependencies": list(spec.dependencies),
        "status": PENDING,
        "created_at": now,
        "started_at": None,
        "completed_at": None,
        "output": None,
        "error": None,
        "progress": 0.0,
        "current_step": None,
        "attempts": 0,
        "released": 0,
        "batch_id": spec.batch_id,
        "operation_id": spec.operation_id,
        "kind": spec.kind,
        "concurrency_key": spec.concurrency_key,
        "concurrency_limit": spec.concurrency_limit,
        "compensation": spec.compensation.to_doc() if spec.compensation else None,
        "timeout_seconds": spec.timeout_seconds or defaults.timeout_seconds,
        "max_attempts": spec.max_attempts or defaults.max_attempts,
        "retries": max(0, spec.retries),
        "not_before": None,
        "metadata": dict(spec.metadata) if spec.metadata else None,
    }


def attempt_id(task_id: str, attempt: int) -> str:
    return f"{task_id}:{attempt}"


def slot_id(key: str, n: int) -> str:
    return f"{key}:slot:{n}"


def wire_status(status: str) -> str:
    """The contract's event shows statuses in lower case (``"completed"``)."""
    return status.lower()


def backoff_seconds(base: float, failures: int) -> float:
    return float(base * (2 ** max(0, failures - 1)))


def effective_attempts(task: Mapping[str, Any], attempt: int) -> int:
    """Attempts that count towards the limit: handed-back ones do not."""
    return attempt - int(task.get("released") or 0)
