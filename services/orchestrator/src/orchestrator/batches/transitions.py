"""A batch's status changes and progress, announced once cluster-wide: each status
change is a snapshot plus ``BatchStatusChanged`` (the snapshot's unique id decides
which replica announces it), each count of finished tasks one ``BatchProgress``
(a claim decides)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from orchestrator.event_types import EventType
from orchestrator.events import EventPublisher
from provisioning_common.timeutil import utcnow

from .ports import SnapshotRecorder
from .repository import BatchRepository


class BatchTransitions:
    def __init__(
        self,
        *,
        repo: BatchRepository,
        snapshots: SnapshotRecorder,
        publisher: EventPublisher,
        worker_id: str,
    ) -> None:
        self.repo = repo
        self.snapshots = snapshots
        self.publisher = publisher
        self.worker_id = worker_id

    async def record(
        self,
        batch: Mapping[str, Any],
        status: str,
        at: datetime,
        details: Mapping[str, Any],
    ) -> None:
        """Snapshot + event, once cluster-wide (the snapshot's unique id decides)."""
        won = await self.snapshots.record(
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
            await self.publisher.publish(
                EventType.BATCH_STATUS_CHANGED,
                data={"batch_id": batch["_id"], "status": status.lower()},
                metadata={
                    "batch_id": batch["_id"],
                    "name": batch["name"],
                    "status": status.lower(),
                    "batch_status": status,
                    "owner": batch.get("created_by"),
                },
            )

    async def progress(
        self, batch: Mapping[str, Any], ops: Sequence[Mapping[str, Any]], finished: int
    ) -> None:
        """``BatchProgress`` for ``finished`` tasks, once per count."""
        key = f"{batch['_id']}:progress:{finished}"
        if not await self.repo.claim(key, self.worker_id, utcnow()):
            return
        total = max(1, int(batch.get("total_tasks") or 0))
        await self.publisher.publish(
            EventType.BATCH_PROGRESS,
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
