"""``client.batches``: batch workflows (the contract's batch document)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from .._convert import from_dict
from ..models import Batch, BatchPlan, Page
from ..transport import idempotency_headers
from ._base import Resource


class BatchesAPI(Resource):
    async def execute(
        self, batch: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Batch:
        """``POST /batch/execute`` with the contract's batch document."""
        data = await self._transport.data(
            "orchestrator",
            "POST",
            "/batch/execute",
            body=dict(batch),
            headers=idempotency_headers(idempotency_key),
        )
        return from_dict(Batch, data)

    async def plan(self, batch: Mapping[str, Any]) -> BatchPlan:
        """``POST /batch/plan``: validation and waves; nothing runs."""
        data = await self._transport.data("orchestrator", "POST", "/batch/plan", body=dict(batch))
        return from_dict(BatchPlan, data)

    async def list(
        self,
        *,
        limit: int | None = None,
        offset: int | None = None,
        status: str | None = None,
    ) -> Page[Batch]:
        params = {"limit": limit, "offset": offset, "status": status}
        return await self._transport.page("orchestrator", "/batch/operations", Batch, params)

    def iter(self, *, page_size: int = 100) -> AsyncIterator[Batch]:
        return self._transport.iterate("orchestrator", "/batch/operations", Batch, {}, page_size)

    async def get(self, batch_id: str) -> Batch:
        data = await self._transport.data("orchestrator", "GET", f"/batch/operations/{batch_id}")
        return from_dict(Batch, data)

    async def cancel(self, batch_id: str) -> Any:
        return await self._transport.data(
            "orchestrator", "POST", f"/batch/operations/{batch_id}/cancel"
        )

    async def resume(
        self,
        batch_id: str,
        *,
        operations: Sequence[str] | None = None,
        rerun_completed: bool = False,
        idempotency_key: str | None = None,
    ) -> Batch:
        """``POST /batch/operations/{id}/resume``: a new run of a finished batch that
        skips what completed (``operations`` narrows it; ``rerun_completed`` runs the
        named operations' completed items again). Its ``extra["resumed_from"]`` is
        ``batch_id``."""
        body: dict[str, Any] = {}
        if operations is not None:
            body["operations"] = list(operations)
        if rerun_completed:
            body["rerun_completed"] = True
        data = await self._transport.data(
            "orchestrator",
            "POST",
            f"/batch/operations/{batch_id}/resume",
            body=body,
            headers=idempotency_headers(idempotency_key),
        )
        return from_dict(Batch, data)

    async def approve(
        self, batch_id: str, operation_id: str, *, comment: str | None = None
    ) -> Batch:
        """Approve the batch's approval gate ``operation_id``; the batch afterwards."""
        return await self._decide(batch_id, operation_id, "approve", comment)

    async def reject(
        self, batch_id: str, operation_id: str, *, comment: str | None = None
    ) -> Batch:
        """Reject the gate: it fails, its dependents never run."""
        return await self._decide(batch_id, operation_id, "reject", comment)

    async def _decide(
        self, batch_id: str, operation_id: str, decision: str, comment: str | None
    ) -> Batch:
        body: dict[str, Any] = {"decision": decision}
        if comment is not None:
            body["comment"] = comment
        data = await self._transport.data(
            "orchestrator",
            "POST",
            f"/batch/operations/{batch_id}/approvals/{operation_id}",
            body=body,
        )
        return from_dict(Batch, data)
