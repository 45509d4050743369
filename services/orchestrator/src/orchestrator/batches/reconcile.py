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

from . import model
from .cancellation import cancel_requested
from .model import CANCELLED, COMPLETED, FAILED, FINISHED, PENDING, RUNNING, TaskStatus, TaskView
from .ports import batch_tasks
from .repository import BatchRepository
from .submission import BatchSubmitter
from .transitions import BatchTransitions

log = logging.getLogger(__name__)


def _view(task: Mapping[str, Any]) -> TaskView:
    return TaskView(str(task["_id"]), str(task["status"]), float(task.get("progress") or 0.0))


def operation_results(
    op: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """An operation's ``results``: task counts by status, a summary and the errors."""
    counts: dict[str, int] = dict.fromkeys(TaskStatus, 0)
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
    ) -> None:
        self.repo = repo
        self.engine = engine
        self.submitter = submitter
        self.transitions = transitions
        self.ledger = ledger
        self.rollback = rollback
        self.orphan_after_seconds = orphan_after_seconds

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

        ops_out = []
        finished = 0
        for op in batch["operations"]:
            # A task that does not exist after cancellation will never be created.
            absent = CANCELLED if cancelled else PENDING
            views = [_view(tasks[t]) if t in tasks else TaskView(t, absent) for t in op["task_ids"]]
            finished += sum(1 for v in views if v.status in FINISHED)
            ops_out.append(
                {
                    **op,
                    "status": model.operation_status(views),
                    "progress": model.operation_progress(views),
                    "results": operation_results(op, tasks),
                }
            )
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
