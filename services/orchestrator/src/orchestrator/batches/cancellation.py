"""Batch cancellation. The request is a claim (``<batch_id>:cancel``) that no
concurrent update of the batch document can undo; the document's
``cancel_requested`` flag is a copy every reconcile pass writes again (DESIGN §3)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from orchestrator.engine import Engine
from provisioning_common.errors import Conflict
from provisioning_common.mongo import Document
from provisioning_common.timeutil import utcnow

from .model import FINISHED, PENDING
from .ports import batch_tasks
from .repository import BatchRepository


def cancel_key(batch_id: str) -> str:
    return f"{batch_id}:cancel"


async def cancel_requested(repo: BatchRepository, batch: Mapping[str, Any]) -> bool:
    """Whether the batch's cancellation was requested (the claim is the truth)."""
    return bool(batch.get("cancel_requested")) or await repo.has_claim(
        cancel_key(str(batch["_id"]))
    )


class BatchCanceller:
    def __init__(
        self,
        *,
        repo: BatchRepository,
        engine: Engine,
        worker_id: str,
        reconcile: Callable[[str], Awaitable[None]],
    ) -> None:
        self.repo = repo
        self.engine = engine
        self.worker_id = worker_id
        self.reconcile = reconcile

    async def cancel(self, batch: Mapping[str, Any]) -> None:
        """Cancel a stored batch: 409 once it has finished, unless this cancel is
        a repeat of the one that finished it."""
        batch_id = str(batch["_id"])
        if batch["status"] in FINISHED:
            if await cancel_requested(self.repo, batch):
                return  # a repeated cancel of the batch it cancelled: harmless
            raise Conflict(f"Batch operation {batch_id} already {batch['status']}")
        # The claim records the request where no concurrent update can undo it; the
        # flag on the batch document is a copy every coordinator pass writes again.
        await self.repo.claim(cancel_key(batch_id), self.worker_id, utcnow())
        await self.repo.update(batch_id, {"cancel_requested": True})
        # Pending tasks first (so nothing new starts), then running ones.
        task_list = await batch_tasks(self.engine.store, batch_id)
        order: list[Document] = sorted(task_list, key=lambda t: 0 if t["status"] == PENDING else 1)
        for task in order:
            if task["status"] not in FINISHED:
                await self.engine.cancel(
                    str(task.get("_id", task.get("id"))), reason="Batch cancelled by user"
                )
        # Tasks a crashed submitter never created are cancelled by never existing:
        # mark creation done so the coordinator does not create them.
        await self.repo.update(batch_id, {"tasks_created": True})
        await self.reconcile(batch_id)
