"""The batch use cases the ``/batch/*`` routes call: plan, execute (once per
Idempotency-Key), list, get and cancel. Built once by the container from the
slice's parts: planning (``planning``), submission (``submission``), reconciliation
(``reconcile``, run by the coordinator) and cancellation (``cancellation``). It
answers batch documents; the routes dump them with the slice's response schemas."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from provisioning_common.errors import NotFound
from provisioning_common.mongo import Document

from . import planning
from .cancellation import BatchCanceller
from .idempotency import submit_once
from .ports import IdempotencyKeys
from .repository import BatchRepository
from .submission import BatchSubmitter


class BatchService:
    def __init__(
        self,
        *,
        repo: BatchRepository,
        submitter: BatchSubmitter,
        canceller: BatchCanceller,
        idempotency: IdempotencyKeys,
        cli: str,
        poke: Callable[[str], None],
    ) -> None:
        self.repo = repo
        self.submitter = submitter
        self.canceller = canceller
        self.idempotency = idempotency
        self.cli = cli
        # Tells this replica's coordinator to look at a batch now.
        self.poke = poke

    def plan(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Validation plus what would run; nothing is stored."""
        return planning.plan(data, self.cli)

    async def execute(
        self, data: Mapping[str, Any], owner: str, *, key: str | None, path: str
    ) -> Document:
        """Submit the batch of a validated body, once per (owner, Idempotency-Key);
        the batch document (a repeat gets the first batch as it stands)."""

        async def run(batch_id: str) -> Document:
            result = await self.submitter.submit(data, owner, batch_id)
            self.poke(batch_id)
            return result

        return await submit_once(
            self.idempotency,
            self.repo,
            key=key,
            user=owner,
            path=path,
            body=data,
            run=run,
        )

    async def lookup(self, batch_id: str) -> Document | None:
        """The stored batch, if any (its owner decides who may read or cancel it)."""
        return await self.repo.get(batch_id)

    async def document(self, batch_id: str) -> Document:
        batch = await self.repo.get(batch_id)
        if batch is None:
            raise NotFound(f"Batch operation {batch_id} not found")
        return batch

    async def get(self, batch_id: str) -> Document:
        """The batch document; 404 when unknown."""
        return await self.document(batch_id)

    async def page(self, offset: int, limit: int) -> tuple[list[Document], int]:
        """A page of batch documents, newest first, and the total."""
        return await self.repo.page(offset, limit)

    async def cancel(self, batch_id: str) -> None:
        """Cancel a batch: 404 when unknown, 409 when it finished on its own."""
        await self.canceller.cancel(await self.document(batch_id))
