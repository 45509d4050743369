"""Batch submission: store the batch, then create all its tasks up front in the
engine (task-level dependencies, one concurrency group for ``parallel_limit``).
Task ids are deterministic, so the coordinator can create what a crashed
submitter did not."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from orchestrator.engine import Compensation, Engine
from orchestrator.engine import TaskSpec as EngineTaskSpec
from orchestrator.rollback.model import PURPOSE_RUN
from provisioning_common.timeutil import utcnow

from .model import PENDING, RUNNING, TaskSpec
from .planning import new_batch, parse_operations, specs_of
from .repository import BatchRepository
from .resumption import runnable
from .transitions import BatchTransitions


def engine_spec(batch: Mapping[str, Any], spec: TaskSpec) -> EngineTaskSpec:
    """The engine task of one of the batch's tasks."""
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


class BatchSubmitter:
    def __init__(
        self, *, repo: BatchRepository, engine: Engine, transitions: BatchTransitions
    ) -> None:
        self.repo = repo
        self.engine = engine
        self.transitions = transitions

    async def submit(
        self,
        data: Mapping[str, Any],
        created_by: str | None,
        batch_id: str | None = None,
    ) -> dict[str, Any]:
        """Store the batch of a validated body and create its tasks; it is Running.
        Returns the batch document as it now stands (``BatchSubmittedOut`` dumps it)."""
        ops = parse_operations(data)  # 422 before anything is stored
        batch_id = batch_id or str(uuid.uuid4())
        now = utcnow()
        batch, specs = new_batch(data, ops, batch_id, created_by, now)
        # Operations behind an approval gate get their tasks once it is approved.
        return await self.start(batch, runnable(batch, specs), now)

    async def start(
        self, batch: dict[str, Any], specs: Sequence[TaskSpec], now: datetime
    ) -> dict[str, Any]:
        """Store a new batch document and create the tasks it runs; it is Running."""
        batch_id = str(batch["_id"])
        await self.repo.insert(batch)
        reason: dict[str, Any] = {"reason": "submitted"}
        if batch.get("resumed_from"):
            reason = {"reason": "resumed", "resumed_from": batch["resumed_from"]}
        await self.transitions.record(batch, PENDING, now, reason)
        if specs:
            await self.engine.create_tasks([engine_spec(batch, s) for s in specs])
        started = utcnow()
        await self.transitions.record(batch, RUNNING, started, {"tasks": len(specs)})
        changes = {"tasks_created": True, "status": RUNNING, "started_at": started}
        await self.repo.update(batch_id, changes)
        return {**batch, **changes}

    async def ensure_tasks(self, batch: Mapping[str, Any], existing: set[str]) -> int:
        """Create the tasks a crashed submitter did not; deterministic ids make a
        concurrent duplicate harmless."""
        missing = [s for s in runnable(batch, specs_of(batch)) if s.id not in existing]
        if missing:
            # The engine's insert ignores ids that exist already (a racing replica).
            await self.engine.create_tasks([engine_spec(batch, s) for s in missing])
        return len(missing)
