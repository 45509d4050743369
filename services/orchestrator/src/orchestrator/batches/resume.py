"""``POST /batch/operations/{id}/resume``: a new run of a finished batch, linked to it
(``resumed_from`` on the new batch, ``resumed_by`` on the original), that skips what
completed and runs the rest (``resumption`` decides which). A batch is resumed at
most once, decided by a claim (``<batch_id>:resume``, a unique insert carrying the
new batch's id), so two resumes never run the same work twice; to go on, resume the
latest run of the chain. A claim left by a request that died before storing its batch
is finished by the next resume, under the claimed id. The new run's automatic rollback
(when the batch has it enabled) compensates its own tasks only: skipped items have no
task in it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from orchestrator.engine import Engine
from provisioning_common.errors import Conflict
from provisioning_common.mongo import Document
from provisioning_common.timeutil import as_utc, utcnow

from .ports import batch_tasks
from .repository import BatchRepository
from .resumption import ResumeRequest, resumed_batch
from .submission import BatchSubmitter

# A claim whose batch is still missing after this long belongs to a request that died
# between the claim and the insert (both happen within one request, in milliseconds).
ORPHAN_AFTER = timedelta(seconds=30)


def resume_key(batch_id: str) -> str:
    return f"{batch_id}:resume"


class BatchResumer:
    def __init__(
        self,
        *,
        repo: BatchRepository,
        engine: Engine,
        submitter: BatchSubmitter,
        worker_id: str,
    ) -> None:
        self.repo = repo
        self.engine = engine
        self.submitter = submitter
        self.worker_id = worker_id

    async def resume(
        self,
        original: Mapping[str, Any],
        data: Mapping[str, Any],
        owner: str,
        batch_id: str,
        *,
        admit: Callable[[int], Awaitable[None]] | None = None,
    ) -> Document:
        """Start the new run ``batch_id`` of ``original``; 409/422 when it cannot be
        resumed that way. ``admit(n)`` may refuse the ``n`` tasks it would create."""
        original_id = str(original["_id"])
        tasks = await batch_tasks(self.engine.store, original_id)
        statuses = {str(t["_id"]): str(t["status"]) for t in tasks}
        now = utcnow()
        batch, specs = resumed_batch(
            original, statuses, ResumeRequest.from_body(data), batch_id, owner, now
        )
        if admit is not None:
            await admit(len(specs))
        key = resume_key(original_id)
        record = {"batch_id": batch_id, "claimed_at": now}
        if not await self.repo.claim(key, self.worker_id, now, record=record):
            claimed = await self.repo.claimed_record(key) or {}
            if not await self._orphaned(key, claimed, now):
                raise Conflict(
                    f"Batch operation {original_id} was already resumed as "
                    f"{claimed.get('batch_id', 'another batch')}; resume that batch instead"
                )
            # The resume that claimed it died before storing its batch: this one
            # finishes it, under the claimed id (the only id readers were promised).
            batch_id = str(claimed["batch_id"])
            batch, specs = resumed_batch(
                original, statuses, ResumeRequest.from_body(data), batch_id, owner, now
            )
        result = await self.submitter.start(batch, specs, now)
        # A pointer for readers; the claim is the truth (DESIGN §3: an update can be lost).
        await self.repo.update(original_id, {"resumed_by": batch_id})
        return result

    async def _orphaned(self, key: str, claimed: Mapping[str, Any], now: datetime) -> bool:
        """Whether the claim names a batch that was never stored, long enough ago that
        its request is gone; a second claim makes one request the one that repairs."""
        batch_id = claimed.get("batch_id")
        at = claimed.get("claimed_at")
        if not isinstance(batch_id, str) or not isinstance(at, datetime):
            return False
        if now - as_utc(at) < ORPHAN_AFTER or await self.repo.get(batch_id) is not None:
            return False
        return await self.repo.claim(f"{key}:repair", self.worker_id, now)
