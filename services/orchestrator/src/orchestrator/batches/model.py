"""Batch DAG rules: operations, their dependency graph, waves and the tasks each
operation expands to (DESIGN §5 table). Pure code, no I/O."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

# Batch statuses are the contract's task statuses (the engine's ``TaskStatus``),
# re-exported for the batch code.
from orchestrator.engine.model import CANCELLED as CANCELLED
from orchestrator.engine.model import COMPLETED as COMPLETED
from orchestrator.engine.model import FAILED as FAILED
from orchestrator.engine.model import FINAL_STATUSES
from orchestrator.engine.model import PENDING as PENDING
from orchestrator.engine.model import RUNNING as RUNNING
from orchestrator.engine.model import TaskStatus as TaskStatus
from orchestrator.rollback.model import ACTIVE_STATUSES as ACTIVE_ROLLBACK_STATUSES

APPROVAL = "approval"
OPERATION_TYPES = ("server_batch", "taskserv_batch", "cluster_batch", APPROVAL)

# A batch that has finished (Completed, Failed or Cancelled).
FINISHED = FINAL_STATUSES

# Identifiers end up in CLI arguments and resource names: a leading letter/digit
# keeps them from being read as flags, the charset keeps them printable and short.
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SAFE_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)

# Namespace for deterministic task ids: any replica re-deriving a batch's tasks
# gets the same ids, so creating a missing task twice is a harmless duplicate.
_TASK_NS = uuid.UUID("6f1f3c1e-5b7a-4e55-9f38-1f0c1b8f0a11")


class DagError(ValueError):
    """Unknown dependency or cycle; ``path`` names the offending operations."""

    def __init__(self, message: str, path: Sequence[str]) -> None:
        super().__init__(message)
        self.path = list(path)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    name: str
    plan: str
    zone: str


@dataclass(frozen=True, slots=True)
class Operation:
    id: str
    type: str
    provider: str
    dependencies: tuple[str, ...] = ()
    server_configs: tuple[ServerConfig, ...] = ()
    taskservs: tuple[str, ...] = ()
    cluster_type: str | None = None
    approvers: tuple[str, ...] = ()
    timeout_seconds: int | None = None
    message: str | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Operation:
        return cls(
            id=raw["id"],
            type=raw["type"],
            provider=raw.get("provider") or "",
            dependencies=tuple(raw.get("dependencies") or ()),
            server_configs=tuple(
                ServerConfig(c["name"], c["plan"], c["zone"])
                for c in raw.get("server_configs") or ()
            ),
            taskservs=tuple(raw.get("taskservs") or ()),
            cluster_type=raw.get("cluster_type"),
            approvers=tuple(raw.get("approvers") or ()),
            timeout_seconds=raw.get("timeout_seconds"),
            message=raw.get("message"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "provider": self.provider,
            "dependencies": list(self.dependencies),
        }
        if self.type == "server_batch":
            out["server_configs"] = [
                {"name": c.name, "plan": c.plan, "zone": c.zone} for c in self.server_configs
            ]
        elif self.type == "taskserv_batch":
            out["taskservs"] = list(self.taskservs)
        elif self.type == APPROVAL:
            del out["provider"]
            out["approvers"] = list(self.approvers)
            out["timeout_seconds"] = self.timeout_seconds
            out["message"] = self.message
        else:
            out["cluster_type"] = self.cluster_type
        return out


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task an operation expands to, with its compensation."""

    id: str
    operation_id: str
    name: str
    kind: str
    subcommand: tuple[str, ...]
    args: tuple[str, ...]
    compensation_subcommand: tuple[str, ...]
    compensation_args: tuple[str, ...]
    dependencies: tuple[str, ...] = field(default=())

    def command(self, cli: str) -> str:
        return " ".join((cli, *self.subcommand))

    def compensation_command(self, cli: str) -> str:
        return " ".join((cli, *self.compensation_subcommand))

    def to_dict(self, cli: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "operation_id": self.operation_id,
            "name": self.name,
            "kind": self.kind,
            "command": self.command(cli),
            "args": list(self.args),
            "compensation": {
                "command": self.compensation_command(cli),
                "args": list(self.compensation_args),
            },
            "dependencies": list(self.dependencies),
        }


def check_dag(operations: Sequence[Operation]) -> None:
    """Raise :class:`DagError` for an unknown dependency or a cycle."""
    known = {op.id for op in operations}
    for op in operations:
        for dep in op.dependencies:
            if dep not in known:
                raise DagError(
                    f"Operation '{op.id}' depends on unknown operation '{dep}'", [op.id, dep]
                )
    cycle = find_cycle(operations)
    if cycle:
        raise DagError(f"Dependency cycle: {' -> '.join(cycle)}", cycle)


def find_cycle(operations: Sequence[Operation]) -> list[str] | None:
    """A cycle as ``[a, b, ..., a]`` or None (iterative DFS, no recursion limit)."""
    deps = {op.id: op.dependencies for op in operations}
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(deps, white)
    for start in deps:
        if colour[start] != white:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = [start]
        colour[start] = grey
        while stack:
            node, idx = stack[-1]
            children = deps.get(node, ())
            if idx < len(children):
                stack[-1] = (node, idx + 1)
                child = children[idx]
                if child not in colour:
                    continue
                if colour[child] == grey:
                    return [*path[path.index(child) :], child]
                if colour[child] == white:
                    colour[child] = grey
                    stack.append((child, 0))
                    path.append(child)
            else:
                colour[node] = black
                stack.pop()
                path.pop()
    return None


def waves(operations: Sequence[Operation]) -> list[list[str]]:
    """Operations grouped by depth: wave N holds operations whose dependencies are
    all in earlier waves (submission order kept inside a wave)."""
    check_dag(operations)
    level: dict[str, int] = {}
    remaining = list(operations)
    while remaining:
        progressed = []
        for op in remaining:
            if all(d in level for d in op.dependencies):
                level[op.id] = 1 + max((level[d] for d in op.dependencies), default=-1)
                progressed.append(op)
        remaining = [op for op in remaining if op.id not in level]
        if not progressed:  # pragma: no cover - check_dag already refused cycles
            raise DagError("Dependency cycle", [op.id for op in remaining])
    out: list[list[str]] = [[] for _ in range(1 + max(level.values(), default=-1))]
    for op in operations:
        out[level[op.id]].append(op.id)
    return out


def task_id(batch_id: str, operation_id: str, index: int, purpose: str = "run") -> str:
    return str(uuid.uuid5(_TASK_NS, f"{batch_id}/{operation_id}/{index}/{purpose}"))


def expand_operation(batch_id: str, op: Operation) -> list[TaskSpec]:
    """The tasks of one operation, without cross-operation dependencies."""
    specs: list[TaskSpec] = []
    if op.type == APPROVAL:
        return specs  # a gate runs nothing: the batch waits for its decision
    if op.type == "server_batch":
        for i, cfg in enumerate(op.server_configs):
            args: tuple[str, ...] = (
                "--provider",
                op.provider,
                "--name",
                cfg.name,
                "--plan",
                cfg.plan,
                "--zone",
                cfg.zone,
            )
            specs.append(
                TaskSpec(
                    id=task_id(batch_id, op.id, i),
                    operation_id=op.id,
                    name=f"{op.id}:create_server:{cfg.name}",
                    kind="servers.create",
                    subcommand=("servers", "create"),
                    args=args,
                    compensation_subcommand=("servers", "delete"),
                    # The identifying args: provider and name (plan/zone do not identify).
                    compensation_args=("--provider", op.provider, "--name", cfg.name),
                )
            )
    elif op.type == "taskserv_batch":
        for i, ts in enumerate(op.taskservs):
            args = (ts, "--provider", op.provider)
            specs.append(
                TaskSpec(
                    id=task_id(batch_id, op.id, i),
                    operation_id=op.id,
                    name=f"{op.id}:create_taskserv:{ts}",
                    kind="taskserv.create",
                    subcommand=("taskserv", "create"),
                    args=args,
                    compensation_subcommand=("taskserv", "delete"),
                    compensation_args=args,
                )
            )
    else:
        assert op.cluster_type is not None
        args = (op.cluster_type, "--provider", op.provider)
        specs.append(
            TaskSpec(
                id=task_id(batch_id, op.id, 0),
                operation_id=op.id,
                name=f"{op.id}:create_cluster:{op.cluster_type}",
                kind="cluster.create",
                subcommand=("cluster", "create"),
                args=args,
                compensation_subcommand=("cluster", "delete"),
                compensation_args=args,
            )
        )
    return specs


def expand_batch(batch_id: str, operations: Sequence[Operation]) -> list[TaskSpec]:
    """Every task of the batch; a task depends on every task of the operations its
    operation depends on (task-level dependencies the engine enforces)."""
    check_dag(operations)
    per_op = {op.id: expand_operation(batch_id, op) for op in operations}
    out: list[TaskSpec] = []
    for op in operations:
        upstream = tuple(t.id for dep in op.dependencies for t in per_op[dep])
        for spec in per_op[op.id]:
            out.append(replace(spec, dependencies=upstream))
    return out


def operation_task_count(op: Operation) -> int:
    if op.type == "server_batch":
        return len(op.server_configs)
    if op.type == "taskserv_batch":
        return len(op.taskservs)
    if op.type == APPROVAL:
        return 0
    return 1


# --- status derivation -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskView:
    """What the batch needs to know about one of its tasks."""

    id: str
    status: str
    progress: float = 0.0


def operation_status(tasks: Sequence[TaskView]) -> str:
    """Failed if any task failed; Cancelled if any was cancelled (and none failed);
    Completed when all completed; Running once any started; else Pending."""
    statuses = [t.status for t in tasks]
    if not statuses:
        return COMPLETED
    if FAILED in statuses:
        return FAILED if all(s in FINISHED for s in statuses) else RUNNING
    if all(s == COMPLETED for s in statuses):
        return COMPLETED
    if all(s in FINISHED for s in statuses):
        return CANCELLED
    if any(s != PENDING for s in statuses):
        return RUNNING
    return PENDING


def operation_progress(tasks: Sequence[TaskView]) -> float:
    """Share of the operation's tasks finished, 0-100 (a running task counts by
    its own reported progress)."""
    if not tasks:
        return 100.0
    total = 0.0
    for t in tasks:
        if t.status in FINISHED:
            total += 1.0
        elif t.status == RUNNING:
            total += max(0.0, min(100.0, t.progress)) / 100.0 * 0.99
    return round(100.0 * total / len(tasks), 1)


def batch_status(op_statuses: Sequence[str], cancel_requested: bool) -> str:
    """Batch status from its operations' statuses."""
    if op_statuses and all(s in FINISHED for s in op_statuses):
        if FAILED in op_statuses:
            return FAILED
        if CANCELLED in op_statuses:
            return CANCELLED
        return COMPLETED
    if cancel_requested:
        return RUNNING  # becomes Cancelled once the running tasks stopped
    if any(s != PENDING for s in op_statuses):
        return RUNNING
    return PENDING


def needs_coordinator(batch: Mapping[str, Any]) -> bool:
    """Unfinished, or finished with an automatic rollback still to start or finish
    (the same test ``BatchRepository.active_ids`` makes in MongoDB)."""
    rollback = batch.get("rollback")
    if batch.get("status") not in FINISHED:
        return True
    if isinstance(rollback, Mapping) and rollback.get("status") in ACTIVE_ROLLBACK_STATUSES:
        return True
    return bool(
        batch.get("status") == FAILED and batch.get("rollback_enabled") and rollback is None
    )
