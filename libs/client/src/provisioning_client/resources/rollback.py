"""``client.rollback``: checkpoints, rollback, restore and the operations ledger.

The namespace is also callable, so the flat ``client.rollback(checkpoint_id=...)``
keeps working: it is :meth:`RollbackAPI.execute`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from .._convert import from_dict
from ..models import Checkpoint, LedgerOperation, Page, RollbackResult, RollbackStatistics
from ._base import Resource


class RollbackAPI(Resource):
    async def create_checkpoint(self, name: str, description: str = "") -> str:
        """``POST /rollback/checkpoints`` → checkpoint id."""
        body = {"name": name, "description": description}
        data = await self._transport.data(
            "orchestrator", "POST", "/rollback/checkpoints", body=body
        )
        return str(data)

    async def list_checkpoints(
        self, *, limit: int | None = None, offset: int | None = None
    ) -> Page[Checkpoint]:
        params = {"limit": limit, "offset": offset}
        return await self._transport.page(
            "orchestrator", "/rollback/checkpoints", Checkpoint, params
        )

    def iter_checkpoints(self, *, page_size: int = 100) -> AsyncIterator[Checkpoint]:
        return self._transport.iterate(
            "orchestrator", "/rollback/checkpoints", Checkpoint, {}, page_size
        )

    async def get_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        path = f"/rollback/checkpoints/{checkpoint_id}"
        return from_dict(Checkpoint, await self._transport.data("orchestrator", "GET", path))

    async def execute(
        self, *, checkpoint_id: str | None = None, operation_ids: Iterable[str] | None = None
    ) -> RollbackResult:
        """``POST /rollback/execute``: to a checkpoint, or of the listed operations."""
        if (checkpoint_id is None) == (operation_ids is None):
            raise ValueError("give exactly one of checkpoint_id and operation_ids")
        body: dict[str, Any] = (
            {"checkpoint_id": checkpoint_id}
            if checkpoint_id is not None
            else {"operation_ids": list(operation_ids or [])}
        )
        data = await self._transport.data("orchestrator", "POST", "/rollback/execute", body=body)
        return from_dict(RollbackResult, data)

    __call__ = execute

    async def restore(self, checkpoint_id: str) -> str:
        """``POST /rollback/restore/{id}`` → the service's confirmation message."""
        path = f"/rollback/restore/{checkpoint_id}"
        return str(await self._transport.data("orchestrator", "POST", path))

    async def statistics(self) -> RollbackStatistics:
        data = await self._transport.data("orchestrator", "GET", "/rollback/statistics")
        return from_dict(RollbackStatistics, data)

    async def list_operations(
        self, *, limit: int | None = None, offset: int | None = None
    ) -> Page[LedgerOperation]:
        params = {"limit": limit, "offset": offset}
        return await self._transport.page(
            "orchestrator", "/rollback/operations", LedgerOperation, params
        )
