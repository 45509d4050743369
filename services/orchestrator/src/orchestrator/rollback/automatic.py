"""The automatic rollback of a failed batch with ``rollback_enabled``: decided once
cluster-wide (a claim carrying the decided record), its compensations created as a
chain of engine tasks, its outcome recorded in the ledger, the batch's snapshots and
the event stream. Driven by the batch reconciler on every pass, so every step is
idempotent and a crash anywhere is repaired by the next pass (any replica's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from orchestrator.engine import Engine
from orchestrator.engine.model import COMPLETED, FAILED, FINAL_STATUSES, RUNNING
from orchestrator.event_types import EventType
from orchestrator.events import EventPublisher
from provisioning_common.timeutil import as_utc, utcnow

from .compensation import compensation_plan, compensation_spec
from .ports import BatchRecords, Snapshots
from .repository import RollbackRepository


class AutomaticRollback:
    def __init__(
        self,
        *,
        batches: BatchRecords,
        ledger: RollbackRepository,
        snapshots: Snapshots,
        engine: Engine,
        publisher: EventPublisher,
        worker_id: str,
    ) -> None:
        self.batches = batches
        self.ledger = ledger
        self.snapshots = snapshots
        self.engine = engine
        self.publisher = publisher
        self.worker_id = worker_id

    async def drive(
        self,
        batch: Mapping[str, Any],
        tasks: Mapping[str, Mapping[str, Any]],
        now: datetime,
    ) -> None:
        """One step of the rollback of the failed ``batch`` (its document with this
        pass's fields), given its tasks by id: start it, create what is missing, or
        record its end once every compensation has finished."""
        rb = batch.get("rollback")
        if rb is None:
            await self._start(batch, tasks, now)
            return
        if rb["status"] in FINAL_STATUSES:
            return
        comp_tasks = {t: tasks.get(t) for t in rb["task_ids"]}
        missing = {t for t, doc in comp_tasks.items() if doc is None}
        if missing:
            plan_items = [
                (tasks[c], cid)
                for c, cid in zip(rb["compensates"], rb["task_ids"], strict=True)
                if c in tasks
            ]
            await self._create_compensations(
                batch, plan_items, rb["rollback_id"], set(rb["task_ids"]) - missing
            )
            return
        statuses = [str(doc["status"]) for doc in comp_tasks.values() if doc is not None]
        if all(s in FINAL_STATUSES for s in statuses):
            executed = sum(1 for s in statuses if s == COMPLETED)
            rb = {
                **rb,
                "status": COMPLETED if executed == len(statuses) else FAILED,
                "operations_executed": executed,
                "operations_failed": len(statuses) - executed,
                "completed_at": utcnow(),
            }
            for run_id, cid in zip(rb["compensates"], rb["task_ids"], strict=True):
                comp = comp_tasks[cid]
                if comp is not None and comp["status"] == COMPLETED:
                    await self.ledger.mark_compensated(run_id, rb["rollback_id"], utcnow())
            # Record and announce before the batch says "done": a crash in between
            # repeats this pass, whose claim keeps the event single.
            await self._done(batch, rb)
            await self.batches.update(
                batch["_id"], {"rollback": rb, "rolled_back": rb["status"] == COMPLETED}
            )

    async def _start(
        self,
        batch: Mapping[str, Any],
        tasks: Mapping[str, Mapping[str, Any]],
        now: datetime,
    ) -> None:
        plan_items = compensation_plan(batch, tasks)
        rb: dict[str, Any] = {
            "rollback_id": f"batch-{batch['_id']}",
            "status": RUNNING if plan_items else COMPLETED,
            "task_ids": [cid for _, cid in plan_items],
            "compensates": [str(t["_id"]) for t, _ in plan_items],
            "started_at": now,
            "completed_at": None if plan_items else now,
            "operations_executed": 0,
            "operations_failed": 0,
        }
        key = f"{batch['_id']}:rollback"
        # The claim carries the decided record: the batch document's copy can be
        # lost (a concurrent update of the document overwrites it, DESIGN §3).
        if not await self.batches.claim(key, self.worker_id, now, record=rb):
            await self._restore(batch, tasks, key)
            return
        # Record first, then create: a crash in between leaves a record whose
        # missing tasks the next pass creates (deterministic ids).
        await self.batches.update(batch["_id"], {"rollback": rb, "rolled_back": not plan_items})
        await self.publisher.publish(
            EventType.ROLLBACK_STARTED,
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
        await self._create_compensations(batch, plan_items, rb["rollback_id"], set())
        if not plan_items:
            await self._done(batch, rb)

    async def _restore(
        self,
        batch: Mapping[str, Any],
        tasks: Mapping[str, Mapping[str, Any]],
        key: str,
    ) -> None:
        """The rollback is claimed but the batch document has no record of it: the
        winner is still writing it, crashed before, or its write was lost to the other
        replica's concurrent update of the batch document. Put the claimed record back
        (the same value whoever writes it) and drive it from there."""
        rb = await self.batches.claimed_record(key)
        if rb is None:
            return  # a claim from before records were kept: nothing to restore from
        await self.batches.update(
            batch["_id"], {"rollback": rb, "rolled_back": rb["status"] == COMPLETED}
        )
        if rb["status"] in FINAL_STATUSES:
            await self._done(batch, rb)  # once, by its own claim
            return
        await self.drive({**batch, "rollback": rb}, tasks, utcnow())

    async def _create_compensations(
        self,
        batch: Mapping[str, Any],
        plan_items: Sequence[tuple[Mapping[str, Any], str]],
        rollback_id: str,
        existing: set[str],
    ) -> None:
        previous: str | None = None
        for task, cid in plan_items:
            if cid not in existing:
                # Deterministic ids: the engine ignores a task that exists already.
                await self.engine.create_task(
                    compensation_spec(
                        task, cid, previous, batch_id=batch["_id"], rollback_id=rollback_id
                    )
                )
            previous = cid

    async def _done(self, batch: Mapping[str, Any], rb: Mapping[str, Any]) -> None:
        """The rollback record, snapshot and ``RollbackCompleted``, once (a claim)."""
        if not await self.batches.claim(f"{batch['_id']}:rollback:done", self.worker_id, utcnow()):
            return
        started = rb.get("started_at")
        finished_at = rb.get("completed_at") or utcnow()
        duration = (as_utc(finished_at) - as_utc(started)).total_seconds() if started else 0.0
        await self.ledger.record_rollback(
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
        await self.snapshots.record(
            batch["_id"],
            f"rollback_{rb['status'].lower()}",
            utcnow(),
            {
                "rollback_id": rb["rollback_id"],
                "operations_executed": rb["operations_executed"],
                "operations_failed": rb["operations_failed"],
            },
        )
        await self.publisher.publish(
            EventType.ROLLBACK_COMPLETED,
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
