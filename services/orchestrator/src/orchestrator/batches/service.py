"""The batch use cases the ``/batch/*`` routes call: plan, execute (once per
Idempotency-Key), list, get, resume and cancel. Built once by the container from the
slice's parts: planning (``planning``), submission (``submission``), reconciliation
(``reconcile``, run by the coordinator) and cancellation (``cancellation``). It
answers batch documents; the routes dump them with the slice's response schemas."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from provisioning_common.errors import Conflict, NotFound
from provisioning_common.mongo import Document

from . import planning
from .approvals import ApprovalGates
from .cancellation import BatchCanceller
from .idempotency import submit_once
from .model import FINISHED
from .ports import IdempotencyKeys
from .repository import BatchRepository
from .resume import BatchResumer
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
        gates: ApprovalGates | None = None,
        allow_self_approval: bool = False,
    ) -> None:
        self.repo = repo
        self.submitter = submitter
        self.canceller = canceller
        self.idempotency = idempotency
        self.cli = cli
        # Tells this replica's coordinator to look at a batch now.
        self.poke = poke
        self.gates = gates or ApprovalGates(
            repo=repo,
            publisher=submitter.transitions.publisher,
            audit=None,
            worker_id=canceller.worker_id,
        )
        self.allow_self_approval = allow_self_approval
        self.resumer = BatchResumer(
            repo=repo,
            engine=submitter.engine,
            submitter=submitter,
            worker_id=canceller.worker_id,
        )

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

    async def resume(
        self,
        batch_id: str,
        data: Mapping[str, Any],
        owner: str,
        *,
        key: str | None,
        path: str,
        admit: Callable[[int], Awaitable[None]] | None = None,
    ) -> Document:
        """Start a new run of a finished batch that skips what completed, once per
        (owner, Idempotency-Key); a repeat gets the first new run as it stands."""
        original = await self.document(batch_id)

        async def run(new_id: str) -> Document:
            result = await self.resumer.resume(original, data, owner, new_id, admit=admit)
            self.poke(new_id)
            return result

        return await submit_once(
            self.idempotency, self.repo, key=key, user=owner, path=path, body=data, run=run
        )

    async def decide(
        self,
        batch_id: str,
        operation_id: str,
        decision: str,
        *,
        comment: str | None,
        sub: str,
        username: str | None,
        roles: Sequence[str],
    ) -> Document:
        """An approver's decision on an approval gate (``approvals``): decided once;
        the batch as it stands afterwards."""
        batch = await self.document(batch_id)
        if batch["status"] in FINISHED:
            raise Conflict(f"Batch operation {batch_id} already {batch['status']}")
        await self.gates.decide(
            batch,
            operation_id,
            decision,
            sub=sub,
            username=username,
            roles=roles,
            comment=comment,
            allow_self=self.allow_self_approval,
        )
        # Release (or fail) at once: this pass creates the held operations' tasks.
        await self.canceller.reconcile(batch_id)
        self.poke(batch_id)
        return await self.document(batch_id)

    async def cancel(self, batch_id: str) -> None:
        """Cancel a batch: 404 when unknown, 409 when it finished on its own."""
        await self.canceller.cancel(await self.document(batch_id))
