"""What the batch slice needs of other slices, as protocols the container wires
(``orchestrator.container``): the engine's tasks of a batch, the state slice's
snapshots and the workflows slice's idempotency keys. No other slice's repository is
imported here; their classes satisfy these protocols structurally."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from provisioning_common.mongo import Document


class BatchTaskReader(Protocol):
    """The engine's task store, as far as batches read it."""

    async def find_by_batch(self, batch_id: str) -> list[Document]: ...


class SnapshotRecorder(Protocol):
    """The state slice's snapshots (``state_snapshots``): one per status change, whose
    unique id decides which replica records (and announces) it."""

    async def record(
        self,
        workflow_id: str,
        state: str,
        at: datetime,
        details: Mapping[str, Any],
        *,
        key: str | None = None,
    ) -> bool: ...


class IdempotencyKeys(Protocol):
    """The workflows slice's ``Idempotency-Key`` store (same keys as ``/workflows``)."""

    async def claim(self, key_id: str, body_hash: str, task_id: str) -> bool: ...

    async def get(self, key_id: str) -> Document | None: ...

    async def release(self, key_id: str, task_id: str) -> None: ...


class AuditRecorder(Protocol):
    """The audit slice's recorder (``AuditService.record``), for what background work
    audits (an approval gate's request, its timeout)."""

    async def record(
        self,
        *,
        action: str,
        resource: str,
        user_id: str | None,
        result: str,
        details: Mapping[str, Any] | None,
    ) -> str: ...


async def batch_tasks(store: BatchTaskReader, batch_id: str) -> list[Document]:
    """The tasks of a batch (run and compensation tasks), oldest first."""
    return await store.find_by_batch(batch_id)
