"""Checkpoints, rollbacks and restores. A checkpoint marks the ledger position
(its creation instant: entries applied later are "after it") and records the
orchestrator's batch state; a rollback runs compensations newest first as
engine tasks and waits for them; a restore writes the recorded state back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.auth.resources import command_action, command_resource
from orchestrator.engine import Engine
from orchestrator.engine.model import COMPLETED, FAILED, FINAL_STATUSES, RUNNING
from orchestrator.event_types import EventType
from orchestrator.events import EventPublisher
from orchestrator.tasks.service import TaskQueries
from provisioning_common.errors import Conflict, NotFound, UnprocessableEntity
from provisioning_common.mongo import Document
from provisioning_common.timeutil import utcnow

from . import model
from .compensation import compensation_spec
from .ports import BatchRecords, Snapshots
from .repository import RollbackRepository

_STATE_FIELDS_DROPPED = ("snapshot_state",)


@dataclass
class RollbackContext:
    repo: RollbackRepository
    batches: BatchRecords
    snapshots: Snapshots
    engine: Engine
    tasks: TaskQueries
    publisher: EventPublisher
    worker_id: str
    wait_seconds: float = 600.0
    poll_seconds: float = 0.2


# --- checkpoints ----------------------------------------------------------------


async def create_checkpoint(ctx: RollbackContext, name: str, description: str | None) -> str:
    now = utcnow()
    batches = [
        {k: v for k, v in b.items() if k not in _STATE_FIELDS_DROPPED}
        for b in await ctx.batches.all()
    ]
    state = {"batches": batches}
    checkpoint_id = str(uuid.uuid4())
    await ctx.repo.insert_checkpoint(
        {
            "_id": checkpoint_id,
            "name": name,
            "description": description,
            "created_at": now,
            # The ledger position: everything applied after this instant is "after it".
            "position": now,
            "operations_count": await ctx.repo.ledger_count(until=now),
            "batches_count": len(batches),
            "size_bytes": model.state_size(state),
            "state": state,
        }
    )
    return checkpoint_id


async def get_checkpoint(ctx: RollbackContext, checkpoint_id: str) -> Document:
    doc = await ctx.repo.get_checkpoint(checkpoint_id)
    if doc is None:
        raise NotFound(f"Checkpoint {checkpoint_id} not found")
    return doc


async def list_checkpoints(
    ctx: RollbackContext, offset: int, limit: int
) -> tuple[list[Document], int]:
    """A page of checkpoint documents, newest first, and the total."""
    return await ctx.repo.list_checkpoints(offset, limit)


async def list_ledger(ctx: RollbackContext, offset: int, limit: int) -> tuple[list[Document], int]:
    """A page of the ledger's documents, newest first, and the total."""
    return await ctx.repo.list_ledger(offset, limit)


# --- rollback -------------------------------------------------------------------


async def _refuse_if_busy(ctx: RollbackContext, batch_ids: set[str]) -> None:
    for batch_id in sorted(batch_ids):
        batch = await ctx.batches.get(batch_id)
        if batch is None:
            continue
        rb = batch.get("rollback") or {}
        if batch["status"] not in FINAL_STATUSES or rb.get("status") == RUNNING:
            raise Conflict(f"Batch {batch_id} is running; try again when it has finished")


def compensation_checks(entries: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str | None]]:
    """``(action, resource, owner)`` of each compensation ``entries`` would run: a
    ``delete`` on the resource of the task it undoes (auth/resources.py)."""
    checks: list[tuple[str, str, str | None]] = []
    for entry in entries:
        comp = entry["compensation"]
        sub, args = list(comp["subcommand"]), list(comp.get("args") or [])
        owner = entry.get("owner")
        checks.append(
            (command_action(sub), command_resource(sub, args), str(owner) if owner else None)
        )
    return checks


async def execute(
    ctx: RollbackContext,
    *,
    checkpoint_id: str | None,
    operation_ids: Sequence[str] | None,
    check: Callable[[Sequence[Mapping[str, Any]]], Awaitable[None]] | None = None,
    owner: str | None = None,
) -> dict[str, Any]:
    """``check`` sees the ledger entries to compensate before anything is claimed or
    created (authorization of every compensation); ``owner`` owns the tasks created."""
    started = time.monotonic()
    if checkpoint_id is not None:
        checkpoint = await get_checkpoint(ctx, checkpoint_id)
        entries = await ctx.repo.ledger_after(checkpoint["position"])
    else:
        ids = list(dict.fromkeys(operation_ids or []))
        entries = await ctx.repo.ledger_entries(ids)
        unknown = sorted(set(ids) - {e["_id"] for e in entries})
        if unknown:
            raise UnprocessableEntity(
                "Unknown operation ids", details={"operation_ids": [", ".join(unknown)]}
            )
    pending = [e for e in entries if not e.get("compensated_by")]
    if check is not None:
        await check(pending)
    await _refuse_if_busy(ctx, {str(e["batch_id"]) for e in pending if e.get("batch_id")})
    if checkpoint_id is not None:
        # Nothing started after the checkpoint may be running either.
        await _refuse_if_busy(ctx, set(await ctx.batches.active_ids()))

    rollback_id = str(uuid.uuid4())
    now = utcnow()
    owned = []
    for entry in model.newest_first(pending):
        key = f"{entry['_id']}:compensation:{int(entry.get('compensation_attempts') or 0)}"
        if await ctx.repo.claim(key, rollback_id, now):
            owned.append(entry)  # another rollback compensating the same entry wins it
    record: dict[str, Any] = {
        "_id": rollback_id,
        "checkpoint_id": checkpoint_id,
        "operation_ids": [e["_id"] for e in owned],
        "status": RUNNING,
        "started_at": now,
        "completed_at": None,
        "task_ids": [],
        "success": None,
        "operations_executed": 0,
        "operations_failed": 0,
        "duration": None,
        "owner": owner,
    }
    await ctx.repo.insert_rollback(record)
    await ctx.publisher.publish(
        EventType.ROLLBACK_STARTED,
        data={"rollback_id": rollback_id, "checkpoint_id": checkpoint_id, "operations": len(owned)},
        metadata={"rollback_id": rollback_id, "owner": owner},
    )
    task_ids: list[str] = []
    previous: str | None = None
    for entry in owned:
        comp_id = str(uuid.uuid4())
        task = {
            "_id": entry["task_id"],
            "name": entry.get("name"),
            "operation_id": entry.get("operation_id"),
            "compensation": {
                "subcommand": entry["compensation"]["subcommand"],
                "args": entry["compensation"]["args"],
            },
        }
        await ctx.engine.create_task(
            compensation_spec(
                task, comp_id, previous, batch_id=None, rollback_id=rollback_id, owner=owner
            )
        )
        task_ids.append(comp_id)
        previous = comp_id
    await ctx.repo.update_rollback(rollback_id, {"task_ids": task_ids})

    finals = await _wait_final(ctx, task_ids)
    executed = failed = 0
    for entry, tid in zip(owned, task_ids, strict=True):
        status = finals.get(tid)
        if status == COMPLETED:
            executed += 1
            await ctx.repo.mark_compensated(str(entry["_id"]), rollback_id, utcnow())
        else:
            failed += 1
            await ctx.repo.note_compensation_failed(
                str(entry["_id"]), int(entry.get("compensation_attempts") or 0) + 1
            )
    duration = round(time.monotonic() - started, 3)
    done = len(finals) == len(task_ids)
    result = {
        "rollback_id": rollback_id,
        "success": done and failed == 0,
        "operations_executed": executed,
        "operations_failed": failed,
        "duration": duration,
    }
    await ctx.repo.update_rollback(
        rollback_id,
        {
            "status": (COMPLETED if result["success"] else FAILED) if done else RUNNING,
            "completed_at": utcnow(),
            "success": result["success"],
            "operations_executed": executed,
            "operations_failed": failed,
            "duration": duration,
        },
    )
    await ctx.publisher.publish(
        EventType.ROLLBACK_COMPLETED,
        data=dict(result),
        metadata={"rollback_id": rollback_id, "owner": owner},
    )
    return result


async def _wait_final(ctx: RollbackContext, task_ids: Sequence[str]) -> dict[str, str]:
    """Final statuses of ``task_ids`` (those that finished within the wait)."""
    deadline = time.monotonic() + ctx.wait_seconds
    finals: dict[str, str] = {}
    while task_ids:
        docs = await ctx.tasks.summaries([t for t in task_ids if t not in finals])
        for tid, doc in docs.items():
            if doc["status"] in FINAL_STATUSES:
                finals[tid] = str(doc["status"])
        if len(finals) == len(task_ids) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(ctx.poll_seconds)
    return finals


# --- restore --------------------------------------------------------------------


async def restore(ctx: RollbackContext, checkpoint_id: str) -> str:
    checkpoint = await ctx.repo.get_checkpoint(checkpoint_id, with_state=True)
    if checkpoint is None:
        raise NotFound(f"Checkpoint {checkpoint_id} not found")
    busy = await ctx.batches.active_ids()  # running, or rolling back
    if busy:
        raise Conflict(f"Batch {sorted(busy)[0]} is running; try again when it has finished")
    recorded: list[Mapping[str, Any]] = list((checkpoint.get("state") or {}).get("batches") or [])
    keep = {b["_id"] for b in recorded}
    removed = [b["_id"] for b in await ctx.batches.all() if b["_id"] not in keep]
    await ctx.batches.replace_all(recorded)
    if removed:
        await ctx.snapshots.delete_for(removed)
    await ctx.repo.mark_restored(checkpoint_id, utcnow())
    return f"State restored from checkpoint {checkpoint_id}"


async def statistics(ctx: RollbackContext) -> dict[str, Any]:
    return model.statistics(
        await ctx.repo.count_checkpoints(),
        await ctx.repo.count_rollbacks(),
        await ctx.repo.finished_rollbacks(),
    )
