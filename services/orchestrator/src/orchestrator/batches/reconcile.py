"""Batch reconciliation: bring one batch's document in line with its tasks
(operation statuses, progress and results, the batch status), record the applied
tasks in the ledger, announce transitions and progress, and drive the automatic
rollback of a failed batch. Run by the coordinator of every replica (and after a
cancel); idempotent and safe to run on every replica at once."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from orchestrator.engine import Engine
from orchestrator.rollback.automatic import AutomaticRollback
from orchestrator.rollback.ledger import LedgerRecorder
from provisioning_common.timeutil import as_utc, utcnow

from . import approvals, model
from .cancellation import cancel_key, cancel_requested
from .model import CANCELLED, COMPLETED, FAILED, FINISHED, PENDING, RUNNING, TaskStatus, TaskView
from .ports import batch_tasks
from .repository import BatchRepository
from .resumption import NOT_SELECTED
from .submission import BatchSubmitter
from .transitions import BatchTransitions

log = logging.getLogger(__name__)


def _view(task: Mapping[str, Any]) -> TaskView:
    return TaskView(str(task["_id"]), str(task["status"]), float(task.get("progress") or 0.0))


def operation_results(
    op: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]], absent: str = PENDING
) -> dict[str, Any]:
    """An operation's ``results``: task counts by status, a summary and the errors."""
    counts: dict[str, int] = dict.fromkeys(TaskStatus, 0)
    errors = []
    skipped = set(op.get("skipped") or ())
    for tid in op["task_ids"]:
        task = tasks.get(tid)
        status = _absent_status(op, tid, absent) if task is None else task["status"]
        counts[status] = counts.get(status, 0) + 1
        if task and task.get("error") and status in (FAILED, CANCELLED):
            errors.append({"task_id": tid, "error": str(task["error"])[:500]})
    total = len(op["task_ids"])
    # task_ids are added by the view (already stored on the operation).
    out: dict[str, Any] = {
        "tasks": {k.lower(): v for k, v in counts.items()},
        "summary": f"{counts[COMPLETED]}/{total} tasks completed"
        + (f" ({len(skipped)} skipped)" if skipped else "")
        + (f", {counts[FAILED]} failed" if counts[FAILED] else "")
        + (f", {counts[CANCELLED]} cancelled" if counts[CANCELLED] else ""),
        "errors": errors,
    }
    if "skipped" in op:  # a resumed run: what it skipped and what it left out
        out["skipped_task_ids"] = sorted(skipped, key=list(op["task_ids"]).index)
        if op.get("excluded"):
            out["summary"] += f"; {NOT_SELECTED}"
    return out


def _absent_status(op: Mapping[str, Any], tid: str, default: str) -> str:
    """The status of an item without a task: Completed when a resumed run skipped it
    (it completed before), Cancelled when its operation was left out of the run."""
    if tid in (op.get("skipped") or ()):
        return COMPLETED
    if op.get("excluded"):
        return CANCELLED
    return default


def _changed(batch: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    return any(batch.get(k) != v for k, v in fields.items())


def _last_completed(tasks: Sequence[Mapping[str, Any]]) -> datetime | None:
    stamps = [as_utc(t["completed_at"]) for t in tasks if t.get("completed_at")]
    return max(stamps) if stamps else None


class BatchReconciler:
    def __init__(
        self,
        *,
        repo: BatchRepository,
        engine: Engine,
        submitter: BatchSubmitter,
        transitions: BatchTransitions,
        ledger: LedgerRecorder,
        rollback: AutomaticRollback,
        orphan_after_seconds: float = 10.0,
        gates: approvals.ApprovalGates | None = None,
    ) -> None:
        self.repo = repo
        self.engine = engine
        self.submitter = submitter
        self.transitions = transitions
        self.ledger = ledger
        self.rollback = rollback
        self.orphan_after_seconds = orphan_after_seconds
        self.gates = gates or approvals.ApprovalGates(
            repo=repo,
            publisher=transitions.publisher,
            audit=None,
            worker_id=transitions.worker_id,
        )

    async def _gate(
        self,
        batch: Mapping[str, Any],
        op: Mapping[str, Any],
        deps: Sequence[str],
        cancelled: bool,
        now: datetime,
    ) -> dict[str, Any]:
        """An approval gate's operation: requested once its dependencies completed,
        decided by an approver or its timeout (``approvals``)."""
        record = op.get("approval")
        if approvals.decided(op) is None and all(d == COMPLETED for d in deps):
            record = await self.gates.state(batch, op, not cancelled, now)
        gate = {**op, "approval": record}
        status, _ = approvals.gate_status(gate, deps, cancelled)
        state = record.get("status") if isinstance(record, Mapping) else None
        return {
            **gate,
            "status": status,
            "progress": 100.0 if status in FINISHED else 0.0,
            "results": {
                "tasks": {},
                "summary": f"approval {state or 'not requested yet'}",
                "errors": [],
                "approval": record,
            },
        }

    async def reconcile(self, batch_id: str) -> None:
        """Bring one batch's document in line with its tasks. Idempotent and safe to
        run on every replica at once: written fields are derived, transitions and
        their events are owned by a unique-``_id`` claim."""
        batch = await self.repo.get(batch_id)
        if batch is None:
            return
        task_list = await batch_tasks(self.engine.store, batch_id)
        tasks = {str(t["_id"]): t for t in task_list}
        now = utcnow()
        # The cancel claim is the truth: a concurrent update can undo the flag (DESIGN §3).
        cancelled = await cancel_requested(self.repo, batch)
        if not batch.get("tasks_created") and cancelled:
            # Tasks a cancelled batch never created are cancelled by never existing.
            await self.repo.update(batch_id, {"tasks_created": True, "cancel_requested": True})
            batch = {**batch, "tasks_created": True}
        if not batch.get("tasks_created"):
            await self._recover_orphan(batch, set(tasks), now)
            return

        by_id: dict[str, dict[str, Any]] = {}
        finished = 0
        # Dependencies first: an approval gate and the operations it holds follow
        # the statuses of their dependencies.
        for op in approvals.topological(batch["operations"]):
            deps = [by_id[d]["status"] for d in op.get("dependencies") or () if d in by_id]
            if approvals.is_gate(op):
                by_id[op["id"]] = await self._gate(batch, op, deps, cancelled, now)
                continue
            # A task that does not exist after cancellation will never be created;
            # nor will the tasks an undecided gate held when a dependency ended badly.
            held = any(d in (FAILED, CANCELLED) for d in deps)
            absent = CANCELLED if cancelled or held else PENDING
            views = [
                _view(tasks[t]) if t in tasks else TaskView(t, _absent_status(op, t, absent))
                for t in op["task_ids"]
            ]
            finished += sum(1 for v in views if v.status in FINISHED)
            by_id[op["id"]] = {
                **op,
                "status": model.operation_status(views),
                "progress": model.operation_progress(views),
                "results": operation_results(op, tasks, absent),
            }
        ops_out = [by_id[op["id"]] for op in batch["operations"]]
        released = any(approvals.decided(o) == approvals.APPROVED for o in ops_out)
        if released and not cancelled and batch["status"] not in FINISHED:
            # Operations a gate held, now released: create their tasks (deterministic
            # ids; the engine ignores those that exist).
            await self.submitter.ensure_tasks({**batch, "operations": ops_out}, set(tasks))
            if await self.repo.has_claim(cancel_key(batch_id)):
                # A cancel that raced this pass listed the batch's tasks before these
                # existed: cancel them too, or they would run in a cancelled batch.
                for task in await batch_tasks(self.engine.store, batch_id):
                    if task["status"] not in FINISHED:
                        await self.engine.cancel(str(task["_id"]), "Batch cancelled by user")
        status = model.batch_status([o["status"] for o in ops_out], cancelled)
        if status == PENDING:
            status = RUNNING  # submitted batches are Running; tasks wait in the queue
        # Written on every pass so that a lost update of these flags is repaired.
        fields: dict[str, Any] = {
            "operations": ops_out,
            "finished_tasks": finished,
            "tasks_created": True,
            "cancel_requested": cancelled,
        }
        if status != batch["status"] and batch["status"] not in FINISHED:
            fields["status"] = status
            if status in FINISHED:
                fields["completed_at"] = _last_completed(task_list) or now
        await self.ledger.record_batch(tasks)
        if "status" in fields:
            # Snapshot and event before the write: a crash in between repeats the
            # transition on the next pass instead of losing its event.
            await self.transitions.record(
                batch,
                status,
                now,
                {
                    "operations": {o["id"]: o["status"] for o in ops_out},
                    "finished_tasks": finished,
                },
            )
        if _changed(batch, fields):
            await self.repo.update(batch_id, fields)
        if finished != batch.get("finished_tasks", 0) or "status" in fields:
            await self.transitions.progress(batch, ops_out, finished)
        final = fields.get("status", batch["status"])
        if final == FAILED and batch.get("rollback_enabled"):
            await self.rollback.drive({**batch, **fields}, tasks, now)

    async def _recover_orphan(
        self, batch: Mapping[str, Any], existing: set[str], now: datetime
    ) -> None:
        """A batch stored without (all) its tasks: its submitter died half-way, or is
        still creating them. Past ``orphan_after_seconds``, create the missing ones."""
        age = (now - as_utc(batch["created_at"])).total_seconds()
        if age < self.orphan_after_seconds:
            return
        batch_id = str(batch["_id"])
        created = await self.submitter.ensure_tasks(batch, existing)
        log.warning("batch %s: created %d tasks its submitter did not", batch_id, created)
        await self.transitions.record(
            batch, RUNNING, now, {"tasks": batch["total_tasks"], "recovered": created}
        )
        await self.repo.update(
            batch_id,
            {
                "tasks_created": True,
                "status": RUNNING,
                "started_at": batch.get("started_at") or now,
            },
        )
