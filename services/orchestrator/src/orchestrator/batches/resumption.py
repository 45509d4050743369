"""Resuming a finished batch from the point of failure: which of its operations and
items run again and which are skipped, and the batch document of the new run.
Pure code, no I/O (``resume`` does the storing).

An item (a task of an operation) that Completed in the original, or that the
original itself skipped because it had completed earlier in the chain, is skipped:
the new run records it Completed without a task. Failed, Cancelled and never-started
items run again. ``operations`` narrows the re-run to the named operations (the
others that completed stay skipped; the others that did not are left out of this
run and end Cancelled, so a later resume can run them); ``rerun_completed`` runs
the items of named operations again even where they completed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from orchestrator.rollback.model import ACTIVE_STATUSES as ACTIVE_ROLLBACK_STATUSES
from provisioning_common.errors import Conflict, UnprocessableEntity

from . import model
from .approvals import APPROVED, decided, held_operations, is_gate, submitters_of
from .model import APPROVAL, COMPLETED, FAILED, FINISHED, PENDING, Operation, TaskSpec
from .planning import batch_document

# The reason an operation left out of a run (``operations`` did not name it) shows.
NOT_SELECTED = "not selected for this run"


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    operations: tuple[str, ...] | None = None
    rerun_completed: bool = False

    @classmethod
    def from_body(cls, data: Mapping[str, Any]) -> ResumeRequest:
        ops = data.get("operations")
        return cls(
            operations=tuple(ops) if ops is not None else None,
            rerun_completed=bool(data.get("rerun_completed")),
        )


def completed_items(batch: Mapping[str, Any], statuses: Mapping[str, str]) -> dict[str, list[bool]]:
    """Per operation, whether each item (by index) completed in ``batch``: its task
    Completed, or the batch skipped it as completed before."""
    out: dict[str, list[bool]] = {}
    for op in batch["operations"]:
        if is_gate(op):
            # A gate has no items: it counts as one, done when it was approved.
            out[op["id"]] = [decided(op) == APPROVED]
            continue
        skipped = set(op.get("skipped") or ())
        out[op["id"]] = [tid in skipped or statuses.get(tid) == COMPLETED for tid in op["task_ids"]]
    return out


def rollback_blocks_resume(batch: Mapping[str, Any]) -> str | None:
    """Why the batch's rollback forbids resuming it, if it does: in progress, or it
    ran (a resumed run would skip items whose resources were removed)."""
    rollback = batch.get("rollback")
    if isinstance(rollback, Mapping) and rollback.get("status") in ACTIVE_ROLLBACK_STATUSES:
        return f"its rollback is {rollback['status']}"
    if batch.get("rolled_back") or isinstance(rollback, Mapping):
        return "it was rolled back"
    if batch.get("status") == FAILED and batch.get("rollback_enabled"):
        return "its automatic rollback is Pending"
    return None


def check_resumable(batch: Mapping[str, Any]) -> None:
    """409 unless the batch has finished, its rollback is not in progress and it was
    not rolled back, and it was not resumed already (resume the latest run instead)."""
    batch_id = batch["_id"]
    if batch["status"] not in FINISHED:
        raise Conflict(
            f"Batch operation {batch_id} is {batch['status']}; only a finished batch can be resumed"
        )
    blocked = rollback_blocks_resume(batch)
    if blocked:
        raise Conflict(f"Batch operation {batch_id} cannot be resumed: {blocked}")
    if batch.get("resumed_by"):
        raise Conflict(
            f"Batch operation {batch_id} was already resumed as {batch['resumed_by']}; "
            "resume that batch instead"
        )


def selection(
    ops: Sequence[Operation], done: Mapping[str, list[bool]], request: ResumeRequest
) -> tuple[dict[str, list[bool]], set[str]]:
    """Which items run (per operation, by index) and which operations are left out;
    422 for an unknown operation, a completed one named without ``rerun_completed``
    or a named one whose dependency neither completed nor runs again."""
    known = {op.id for op in ops}
    fully_done = {op.id for op in ops if all(done.get(op.id) or [True])}
    if request.operations is None:
        chosen = known
    else:
        unknown = sorted(set(request.operations) - known)
        if unknown:
            message = f"Unknown operations: {', '.join(unknown)}"
            raise UnprocessableEntity(message, details={"operations": [message]})
        chosen = set(request.operations)
        finished = sorted(chosen & fully_done)
        if finished and not request.rerun_completed:
            message = (
                f"Operations completed in the original batch: {', '.join(finished)}; "
                "set rerun_completed to run them again"
            )
            raise UnprocessableEntity(message, details={"operations": [message]})
    run: dict[str, list[bool]] = {}
    for op in ops:
        items = done.get(op.id) or []
        if op.id not in chosen:
            run[op.id] = [False] * len(items)
        elif request.operations is not None and request.rerun_completed:
            run[op.id] = [True] * len(items)
        else:
            run[op.id] = [not d for d in items]
    # Left out: not chosen, and not completed (a completed one is simply skipped).
    excluded = {op.id for op in ops if op.id not in chosen and op.id not in fully_done}
    for op in ops:
        if op.id not in chosen:
            continue
        for dep in op.dependencies:
            if dep not in fully_done and dep not in chosen:
                message = (
                    f"Operation '{op.id}' depends on '{dep}', which did not complete "
                    "and is not among the operations to run"
                )
                raise UnprocessableEntity(message, details={"operations": [message]})
    if not any(any(flags) for flags in run.values()):
        raise Conflict("Nothing to resume: every selected operation completed")
    return run, excluded


def runnable(batch: Mapping[str, Any], specs: Sequence[TaskSpec]) -> list[TaskSpec]:
    """The tasks of ``specs`` a batch runs now: without a resumed run's skipped items
    and left-out operations, nor the operations an approval gate holds, and without
    dependencies on them (a skipped item counts as completed; a held operation's
    tasks are created when its gates are approved, after their dependencies)."""
    idle: set[str] = set()
    held = held_operations(batch["operations"])
    for op in batch["operations"]:
        if op.get("excluded") or op["id"] in held:
            idle.update(op["task_ids"])
        idle.update(op.get("skipped") or ())
    out = []
    for spec in specs:
        if spec.id in idle:
            continue
        deps = tuple(d for d in spec.dependencies if d not in idle)
        out.append(replace(spec, dependencies=deps))
    return out


def resumed_batch(
    original: Mapping[str, Any],
    statuses: Mapping[str, str],
    request: ResumeRequest,
    batch_id: str,
    created_by: str | None,
    now: datetime,
) -> tuple[dict[str, Any], list[TaskSpec]]:
    """The new run's batch document (same operations, DAG and ``parallel_limit``,
    ``resumed_from`` the original) and the tasks it runs. 409/422 as ``check_resumable``
    and ``selection`` say."""
    check_resumable(original)
    ops = [Operation.from_dict(o) for o in original["operations"]]
    done = completed_items(original, statuses)
    previous = {str(o["id"]): o for o in original["operations"]}
    run, excluded = selection(ops, done, request)
    specs = model.expand_batch(batch_id, ops)
    op_docs = []
    for op in ops:
        ids = [s.id for s in specs if s.operation_id == op.id]
        flags = run[op.id]
        doc = op.to_dict()
        if op.type == APPROVAL and not (flags and flags[0]) and op.id not in excluded:
            # An approved gate that does not run again stays approved.
            doc["approval"] = dict(previous[op.id].get("approval") or {})
        flags = flags if op.type != APPROVAL else []
        doc.update(
            task_ids=ids,
            skipped=[]
            if op.id in excluded
            else [tid for tid, again in zip(ids, flags, strict=True) if not again],
            excluded=op.id in excluded,
            status=PENDING,
            progress=0.0,
            results=None,
        )
        op_docs.append(doc)
    batch = batch_document(original, batch_id, created_by, now, op_docs, len(specs))
    batch.update(
        {
            # Everyone who submitted or resumed this chain of runs: none of them may
            # approve its gates (four-eyes holds across a resume by someone else).
            "submitters": sorted({*submitters_of(original), *([created_by] if created_by else [])}),
            "resumed_from": original["_id"],
            "resume": {
                "operations": (
                    list(request.operations) if request.operations is not None else None
                ),
                "rerun_completed": request.rerun_completed,
            },
        }
    )
    return batch, runnable(batch, specs)
