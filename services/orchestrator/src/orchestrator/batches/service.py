"""Batch use cases: plan, submit, derive status from the tasks, cancel, and the
automatic rollback of a failed batch. Repositories and the engine are passed in."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.engine import Compensation, Engine
from orchestrator.engine import TaskSpec as EngineTaskSpec
from orchestrator.events import EventPublisher
from orchestrator.rollback.repository import RollbackRepository
from orchestrator.state.repository import SnapshotRepository
from provisioning_common.errors import Conflict, NotFound, UnprocessableEntity
from provisioning_common.mongo import Document
from provisioning_common.timeutil import as_utc, utcnow

from . import model
from .model import (
    CANCELLED,
    COMPLETED,
    FAILED,
    FINISHED,
    PENDING,
    RUNNING,
    DagError,
    Operation,
    TaskSpec,
    TaskView,
)
from .ports import batch_tasks
from .repository import BatchRepository

log = logging.getLogger(__name__)

PURPOSE_RUN = "run"
PURPOSE_COMPENSATION = "compensation"


@dataclass
class BatchContext:
    repo: BatchRepository
    snapshots: SnapshotRepository
    ledger: RollbackRepository
    engine: Engine
    publisher: EventPublisher
    cli: str
    worker_id: str
    orphan_after_seconds: float = 10.0
    # Task ids this replica knows are in the ledger: saves a query per pass.
    ledgered: set[str] = field(default_factory=set)


# --- planning -------------------------------------------------------------------


def parse_operations(data: Mapping[str, Any]) -> list[Operation]:
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


# --- submission -----------------------------------------------------------------


def _engine_spec(batch: Mapping[str, Any], spec: TaskSpec) -> EngineTaskSpec:
    return EngineTaskSpec(
        name=spec.name,
        subcommand=spec.subcommand,
        args=spec.args,
        dependencies=spec.dependencies,
        task_id=spec.id,
        batch_id=batch["_id"],
        operation_id=spec.operation_id,
        kind=spec.kind,
        concurrency_key=f"batch:{batch['_id']}",
        concurrency_limit=int(batch["parallel_limit"]),
        compensation=Compensation(
            subcommand=spec.compensation_subcommand, args=spec.compensation_args
        ),
        metadata={"purpose": PURPOSE_RUN, "owner": batch.get("created_by") or None},
    )


def _specs_of(batch: Mapping[str, Any]) -> list[TaskSpec]:
    ops = [Operation.from_dict(o) for o in batch["operations"]]
    return model.expand_batch(batch["_id"], ops)


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
    batch: dict[str, Any] = {
        "_id": batch_id,
        "name": data["name"],
        "version": data["version"],
        "storage_backend": data["storage_backend"],
        "parallel_limit": data["parallel_limit"],
        "rollback_enabled": data["rollback_enabled"],
        "created_by": created_by,
        "created_at": now,
        "started_at": None,
        "completed_at": None,
        "status": PENDING,
        "tasks_created": False,
        "cancel_requested": False,
        "rolled_back": False,
        "rollback": None,
        "total_tasks": len(specs),
        "finished_tasks": 0,
        "operations": op_docs,
    }
    return batch, specs


async def submit(
    ctx: BatchContext,
    data: Mapping[str, Any],
    created_by: str | None,
    batch_id: str | None = None,
) -> dict[str, Any]:
    ops = parse_operations(data)  # 422 before anything is stored
    batch_id = batch_id or str(uuid.uuid4())
    now = utcnow()
    batch, specs = new_batch(data, ops, batch_id, created_by, now)
    await ctx.repo.insert(batch)
    await _transition(ctx, batch, PENDING, now, {"reason": "submitted"})
    await ctx.engine.create_tasks([_engine_spec(batch, s) for s in specs])
    started = utcnow()
    await _transition(ctx, batch, RUNNING, started, {"tasks": len(specs)})
    await ctx.repo.update(
        batch_id, {"tasks_created": True, "status": RUNNING, "started_at": started}
    )
    return {
        "batch_id": batch_id,
        "status": RUNNING,
        "operations": [{"id": op.id, "status": PENDING, "progress": 0.0} for op in ops],
    }


async def ensure_tasks(ctx: BatchContext, batch: Mapping[str, Any], existing: set[str]) -> int:
    """Create the tasks a crashed submitter did not; deterministic ids make a
    concurrent duplicate harmless."""
    missing = [s for s in _specs_of(batch) if s.id not in existing]
    if missing:
        # The engine's insert ignores ids that exist already (a racing replica).
        await ctx.engine.create_tasks([_engine_spec(batch, s) for s in missing])
    return len(missing)


# --- views ----------------------------------------------------------------------


def submitted_view(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The answer of ``/batch/execute`` (also for a repeated Idempotency-Key)."""
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


def batch_summary(batch: Mapping[str, Any]) -> dict[str, Any]:
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


async def get_batch(ctx: BatchContext, batch_id: str) -> Document:
    batch = await ctx.repo.get(batch_id)
    if batch is None:
        raise NotFound(f"Batch operation {batch_id} not found")
    return batch


# --- derivation -----------------------------------------------------------------


def _view(task: Mapping[str, Any]) -> TaskView:
    return TaskView(str(task["_id"]), str(task["status"]), float(task.get("progress") or 0.0))


def _results(op: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    counts = dict.fromkeys(("Pending", "Running", "Completed", "Failed", "Cancelled"), 0)
    errors = []
    for tid in op["task_ids"]:
        task = tasks.get(tid)
        status = task["status"] if task else PENDING
        counts[status] = counts.get(status, 0) + 1
        if task and task.get("error") and status in (FAILED, CANCELLED):
            errors.append({"task_id": tid, "error": str(task["error"])[:500]})
    total = len(op["task_ids"])
    # task_ids are added by the view (already stored on the operation).
    return {
        "tasks": {k.lower(): v for k, v in counts.items()},
        "summary": f"{counts[COMPLETED]}/{total} tasks completed"
        + (f", {counts[FAILED]} failed" if counts[FAILED] else "")
        + (f", {counts[CANCELLED]} cancelled" if counts[CANCELLED] else ""),
        "errors": errors,
    }


async def reconcile(ctx: BatchContext, batch_id: str) -> None:
    """Bring one batch's document in line with its tasks. Idempotent and safe to
    run on every replica at once: written fields are derived, transitions and
    their events are owned by a unique-``_id`` claim."""
    batch = await ctx.repo.get(batch_id)
    if batch is None:
        return
    task_list = await batch_tasks(ctx.engine.store, batch_id)
    tasks = {str(t["_id"]): t for t in task_list}
    now = utcnow()
    # The cancel claim is the truth: a concurrent update can undo the flag (DESIGN §3).
    cancel_requested = await _cancel_requested(ctx, batch)
    if not batch.get("tasks_created") and cancel_requested:
        # Tasks a cancelled batch never created are cancelled by never existing.
        await ctx.repo.update(batch_id, {"tasks_created": True, "cancel_requested": True})
        batch = {**batch, "tasks_created": True}
    if not batch.get("tasks_created"):
        age = (now - as_utc(batch["created_at"])).total_seconds()
        if age < ctx.orphan_after_seconds:
            return
        created = await ensure_tasks(ctx, batch, set(tasks))
        log.warning("batch %s: created %d tasks its submitter did not", batch_id, created)
        await _transition(
            ctx, batch, RUNNING, now, {"tasks": batch["total_tasks"], "recovered": created}
        )
        await ctx.repo.update(
            batch_id,
            {
                "tasks_created": True,
                "status": RUNNING,
                "started_at": batch.get("started_at") or now,
            },
        )
        return

    ops_out = []
    finished = 0
    for op in batch["operations"]:
        # A task that does not exist after cancellation will never be created.
        absent = CANCELLED if cancel_requested else PENDING
        views = [_view(tasks[t]) if t in tasks else TaskView(t, absent) for t in op["task_ids"]]
        finished += sum(1 for v in views if v.status in FINISHED)
        ops_out.append(
            {
                **op,
                "status": model.operation_status(views),
                "progress": model.operation_progress(views),
                "results": _results(op, tasks),
            }
        )
    status = model.batch_status([o["status"] for o in ops_out], cancel_requested)
    if status == PENDING:
        status = RUNNING  # submitted batches are Running; tasks wait in the queue
    # Written on every pass so that a lost update of these flags is repaired.
    fields: dict[str, Any] = {
        "operations": ops_out,
        "finished_tasks": finished,
        "tasks_created": True,
        "cancel_requested": cancel_requested,
    }
    if status != batch["status"] and batch["status"] not in FINISHED:
        fields["status"] = status
        if status in FINISHED:
            fields["completed_at"] = _last_completed(task_list) or now
    await _record_ledger(ctx, batch, tasks)
    if "status" in fields:
        # Snapshot and event before the write: a crash in between repeats the
        # transition on the next pass instead of losing its event.
        await _transition(
            ctx,
            batch,
            status,
            now,
            {
                "operations": {o["id"]: o["status"] for o in ops_out},
                "finished_tasks": finished,
            },
        )
    if _changed(batch, fields):
        await ctx.repo.update(batch_id, fields)
    if finished != batch.get("finished_tasks", 0) or "status" in fields:
        await _progress_event(ctx, batch, ops_out, finished)
    final = fields.get("status", batch["status"])
    if final == FAILED and batch.get("rollback_enabled"):
        merged = {**batch, **fields}
        await _drive_rollback(ctx, merged, tasks, now)


def _changed(batch: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    return any(batch.get(k) != v for k, v in fields.items())


def _last_completed(tasks: Sequence[Mapping[str, Any]]) -> datetime | None:
    stamps = [as_utc(t["completed_at"]) for t in tasks if t.get("completed_at")]
    return max(stamps) if stamps else None


async def _transition(
    ctx: BatchContext,
    batch: Mapping[str, Any],
    status: str,
    at: datetime,
    details: Mapping[str, Any],
) -> None:
    """Snapshot + event, once cluster-wide (the snapshot's unique id decides)."""
    won = await ctx.snapshots.record(
        batch["_id"],
        status,
        at,
        {
            "name": batch["name"],
            "status": status,
            **details,
        },
    )
    if won:
        await ctx.publisher.publish(
            "BatchStatusChanged",
            data={"batch_id": batch["_id"], "status": status.lower()},
            metadata={
                "batch_id": batch["_id"],
                "name": batch["name"],
                "status": status.lower(),
                "batch_status": status,
                "owner": batch.get("created_by"),
            },
        )


async def _progress_event(
    ctx: BatchContext, batch: Mapping[str, Any], ops: Sequence[Mapping[str, Any]], finished: int
) -> None:
    if not await ctx.repo.claim(f"{batch['_id']}:progress:{finished}", ctx.worker_id, utcnow()):
        return
    total = max(1, int(batch.get("total_tasks") or 0))
    await ctx.publisher.publish(
        "BatchProgress",
        data={
            "batch_id": batch["_id"],
            "progress": round(100.0 * finished / total, 1),
            "completed_steps": finished,
            "total_steps": total,
            "operations": [
                {"id": o["id"], "status": o["status"], "progress": o["progress"]} for o in ops
            ],
        },
        metadata={
            "batch_id": batch["_id"],
            "name": batch["name"],
            "owner": batch.get("created_by"),
        },
    )


async def _record_ledger(
    ctx: BatchContext, batch: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]]
) -> None:
    """Every completed task of the batch with a compensation enters the ledger once."""
    done = [
        t
        for t in tasks.values()
        if t["status"] == COMPLETED
        and t.get("compensation")
        and (t.get("metadata") or {}).get("purpose", PURPOSE_RUN) == PURPOSE_RUN
        and str(t["_id"]) not in ctx.ledgered
    ]
    if not done:
        return
    known = {e["_id"] for e in await ctx.ledger.ledger_entries([str(t["_id"]) for t in done])}
    for t in done:
        if str(t["_id"]) not in known:
            await ctx.ledger.record_applied(ledger_entry(t, ctx.cli))
        ctx.ledgered.add(str(t["_id"]))
    if len(ctx.ledgered) > 100_000:  # a cache, not a record: keep memory bounded
        ctx.ledgered.clear()


def ledger_entry(task: Mapping[str, Any], cli: str) -> dict[str, Any]:
    comp = task["compensation"]
    return {
        "_id": str(task["_id"]),
        "task_id": str(task["_id"]),
        "batch_id": task.get("batch_id"),
        "operation_id": task.get("operation_id"),
        "kind": task.get("kind"),
        "name": task.get("name"),
        "owner": _task_owner(task),
        "applied": {"command": task["command"], "args": list(task.get("args") or [])},
        "compensation": {
            "command": " ".join([cli, *comp["subcommand"]]),
            "subcommand": list(comp["subcommand"]),
            "args": list(comp.get("args") or []),
        },
        "applied_at": as_utc(task["completed_at"]) if task.get("completed_at") else utcnow(),
        "compensated_by": None,
        "compensated_at": None,
    }


# --- automatic rollback ---------------------------------------------------------


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
        (task, model.task_id(batch["_id"], str(task["operation_id"]), i, "compensate"))
        for i, (_, task) in enumerate(items)
    ]


def _task_owner(task: Mapping[str, Any]) -> str | None:
    metadata = task.get("metadata")
    owner = metadata.get("owner") if isinstance(metadata, Mapping) else task.get("owner")
    return str(owner) if owner else None


def compensation_spec(
    task: Mapping[str, Any],
    comp_id: str,
    previous: str | None,
    *,
    batch_id: str | None,
    rollback_id: str,
    owner: str | None = None,
) -> EngineTaskSpec:
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
            "owner": owner if owner is not None else _task_owner(task),
        },
    )


async def _drive_rollback(
    ctx: BatchContext,
    batch: Mapping[str, Any],
    tasks: Mapping[str, Mapping[str, Any]],
    now: datetime,
) -> None:
    rb = batch.get("rollback")
    key = f"{batch['_id']}:rollback"
    if rb is None:
        plan_items = compensation_plan(batch, tasks)
        rb = {
            "rollback_id": f"batch-{batch['_id']}",
            "status": RUNNING if plan_items else COMPLETED,
            "task_ids": [cid for _, cid in plan_items],
            "compensates": [str(t["_id"]) for t, _ in plan_items],
            "started_at": now,
            "completed_at": None if plan_items else now,
            "operations_executed": 0,
            "operations_failed": 0,
        }
        # The claim carries the decided record: the batch document's copy can be
        # lost (a concurrent update of the document overwrites it, DESIGN §3).
        if not await ctx.repo.claim(key, ctx.worker_id, now, record=rb):
            await _restore_rollback(ctx, batch, tasks, key)
            return
        # Record first, then create: a crash in between leaves a record whose
        # missing tasks the next pass creates (deterministic ids).
        await ctx.repo.update(batch["_id"], {"rollback": rb, "rolled_back": not plan_items})
        await ctx.publisher.publish(
            "RollbackStarted",
            data={
                "batch_id": batch["_id"],
                "rollback_id": rb["rollback_id"],
                "operations": len(plan_items),
            },
            metadata={
                "batch_id": batch["_id"],
                "name": batch["name"],
                "owner": batch.get("created_by"),
            },
        )
        await _create_compensations(ctx, batch, plan_items, rb["rollback_id"], set())
        if not plan_items:
            await _rollback_done(ctx, batch, rb)
        return
    if rb["status"] in FINISHED:
        return
    comp_tasks = {t: tasks.get(t) for t in rb["task_ids"]}
    missing = {t for t, doc in comp_tasks.items() if doc is None}
    if missing:
        plan_items = [
            (tasks[c], cid)
            for c, cid in zip(rb["compensates"], rb["task_ids"], strict=True)
            if c in tasks
        ]
        await _create_compensations(
            ctx, batch, plan_items, rb["rollback_id"], set(rb["task_ids"]) - missing
        )
        return
    statuses = [str(doc["status"]) for doc in comp_tasks.values() if doc is not None]
    if all(s in FINISHED for s in statuses):
        executed = sum(1 for s in statuses if s == COMPLETED)
        rb = {
            **rb,
            "status": COMPLETED if executed == len(statuses) else FAILED,
            "operations_executed": executed,
            "operations_failed": len(statuses) - executed,
            "completed_at": utcnow(),
        }
        for run_id, cid in zip(rb["compensates"], rb["task_ids"], strict=True):
            if comp_tasks[cid] and comp_tasks[cid]["status"] == COMPLETED:  # type: ignore[index]
                await ctx.ledger.mark_compensated(run_id, rb["rollback_id"], utcnow())
        # Record and announce before the batch says "done": a crash in between
        # repeats this pass, whose claim keeps the event single.
        await _rollback_done(ctx, batch, rb)
        await ctx.repo.update(
            batch["_id"], {"rollback": rb, "rolled_back": rb["status"] == COMPLETED}
        )


async def _restore_rollback(
    ctx: BatchContext,
    batch: Mapping[str, Any],
    tasks: Mapping[str, Mapping[str, Any]],
    key: str,
) -> None:
    """The rollback is claimed but the batch document has no record of it: the
    winner is still writing it, crashed before, or its write was lost to the other
    replica's concurrent update of the batch document. Put the claimed record back
    (the same value whoever writes it) and drive it from there."""
    rb = await ctx.repo.claimed_record(key)
    if rb is None:
        return  # a claim from before records were kept: nothing to restore from
    await ctx.repo.update(batch["_id"], {"rollback": rb, "rolled_back": rb["status"] == COMPLETED})
    if rb["status"] in FINISHED:
        await _rollback_done(ctx, batch, rb)  # once, by its own claim
        return
    await _drive_rollback(ctx, {**batch, "rollback": rb}, tasks, utcnow())


async def _create_compensations(
    ctx: BatchContext,
    batch: Mapping[str, Any],
    plan_items: Sequence[tuple[Mapping[str, Any], str]],
    rollback_id: str,
    existing: set[str],
) -> None:
    previous: str | None = None
    for task, cid in plan_items:
        if cid not in existing:
            # Deterministic ids: the engine ignores a task that exists already.
            await ctx.engine.create_task(
                compensation_spec(
                    task, cid, previous, batch_id=batch["_id"], rollback_id=rollback_id
                )
            )
        previous = cid


async def _rollback_done(
    ctx: BatchContext, batch: Mapping[str, Any], rb: Mapping[str, Any]
) -> None:
    if not await ctx.repo.claim(f"{batch['_id']}:rollback:done", ctx.worker_id, utcnow()):
        return
    started = rb.get("started_at")
    finished_at = rb.get("completed_at") or utcnow()
    duration = (as_utc(finished_at) - as_utc(started)).total_seconds() if started else 0.0
    await ctx.ledger.record_rollback(
        {
            "_id": rb["rollback_id"],
            "batch_id": batch["_id"],
            "checkpoint_id": None,
            "operation_ids": list(rb.get("compensates") or []),
            "task_ids": list(rb["task_ids"]),
            "status": rb["status"],
            "started_at": started,
            "completed_at": finished_at,
            "success": rb["status"] == COMPLETED,
            "operations_executed": rb["operations_executed"],
            "operations_failed": rb["operations_failed"],
            "duration": round(duration, 3),
        }
    )
    await ctx.snapshots.record(
        batch["_id"],
        f"rollback_{rb['status'].lower()}",
        utcnow(),
        {
            "rollback_id": rb["rollback_id"],
            "operations_executed": rb["operations_executed"],
            "operations_failed": rb["operations_failed"],
        },
    )
    await ctx.publisher.publish(
        "RollbackCompleted",
        data={
            "batch_id": batch["_id"],
            "rollback_id": rb["rollback_id"],
            "success": rb["status"] == COMPLETED,
            "operations_executed": rb["operations_executed"],
            "operations_failed": rb["operations_failed"],
        },
        metadata={
            "batch_id": batch["_id"],
            "name": batch["name"],
            "owner": batch.get("created_by"),
        },
    )


# --- cancellation ---------------------------------------------------------------


def _cancel_key(batch_id: str) -> str:
    return f"{batch_id}:cancel"


async def _cancel_requested(ctx: BatchContext, batch: Document) -> bool:
    return bool(batch.get("cancel_requested")) or await ctx.repo.has_claim(
        _cancel_key(str(batch["_id"]))
    )


async def cancel(ctx: BatchContext, batch_id: str) -> None:
    batch = await get_batch(ctx, batch_id)
    if batch["status"] in FINISHED:
        if await _cancel_requested(ctx, batch):
            return  # a repeated cancel of the batch it cancelled: harmless
        raise Conflict(f"Batch operation {batch_id} already {batch['status']}")
    # The claim records the request where no concurrent update can undo it; the flag
    # on the batch document is a copy every coordinator pass writes again.
    await ctx.repo.claim(_cancel_key(batch_id), ctx.worker_id, utcnow())
    await ctx.repo.update(batch_id, {"cancel_requested": True})
    # Pending tasks first (so nothing new starts), then running ones.
    task_list = await batch_tasks(ctx.engine.store, batch_id)
    order: list[Document] = sorted(task_list, key=lambda t: 0 if t["status"] == PENDING else 1)
    for task in order:
        if task["status"] not in FINISHED:
            await ctx.engine.cancel(
                str(task.get("_id", task.get("id"))), reason="Batch cancelled by user"
            )
    # Tasks a crashed submitter never created are cancelled by never existing:
    # mark creation done so the coordinator does not create them.
    await ctx.repo.update(batch_id, {"tasks_created": True})
    await reconcile(ctx, batch_id)
