"""``client.batches``: batch workflows (the contract's batch document)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
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
