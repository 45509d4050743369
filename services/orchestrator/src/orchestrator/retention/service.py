"""The retention sweep: remove finished history older than the window.

Once per slot of ``RETENTION_SWEEP_SECONDS`` (aligned to the epoch), every replica
tries to insert ``retention_runs/retention:<slot start>``; the one whose insert
succeeds runs the pass (DESIGN §3 concurrency rule) and records what it removed in
that document.

A pass:

1. walks the Redis task index from the oldest task (``index.oldest``: tasks created
   before the cutoff, which every task finished before it is), a page of
   ``RETENTION_BATCH`` ids at a time, point-reads them, and removes those whose final
   status was decided before the cutoff (task, attempts, final record, cancel request,
   output, leftover queue entry; then their index entries). Tasks still Pending or
   Running, finished recently, or belonging to a batch that still reads them, are
   kept and skipped by later pages (so they never make a pass spin or re-read
   them); an id whose task is gone from MongoDB is only forgotten by the index. The
   pass stops when the index has no more candidates before the cutoff, or once it
   has kept ``KEPT_PAGES`` pages' worth of tasks (each page asks the index past
   them, so that bounds a pass's cost when many old tasks cannot go yet);
2. deletes stored events and finished outbox items older than the cutoff and run
   records older than the window (range filters: once per pass, off the hot path).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime

import pymongo

from provisioning_common.mongo import Document
from provisioning_common.timeutil import utcnow

from ..metrics import RETENTION_REMOVED
from . import model
from .repository import RetentionRepository
from .settings import RetentionSettings

log = logging.getLogger(__name__)
_PASS_SECONDS = 600.0  # bound of one whole pass's MongoDB calls

# A pass gives up after keeping this many pages of old tasks that cannot go yet.
KEPT_PAGES = 10


@dataclass(slots=True)
class PassResult:
    """What one pass removed (and what it looked at but kept)."""

    run_id: str
    cutoff: datetime
    tasks: int = 0
    attempts: int = 0
    forgotten: int = 0  # index entries whose task was gone from MongoDB already
    kept: int = 0  # old candidates not removable yet
    events: int = 0
    outbox: int = 0
    runs: int = 0
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k not in ("run_id", "cutoff", "errors")}


class RetentionSweeper:
    def __init__(
        self,
        repo: RetentionRepository,
        settings: RetentionSettings,
        *,
        worker_id: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.repo = repo
        self.settings = settings
        self.worker_id = worker_id
        self.clock = clock

    # ------------------------------------------------------------------ loop
    async def run(self) -> None:
        """Sweep at the start of every slot, for ever (cancel to stop)."""
        interval = self.settings.sweep_seconds
        # Wake a little after the boundary, so an early timer never names the
        # slot that just ended.
        margin = min(1.0, interval / 10)
        while True:
            await asyncio.sleep(model.seconds_to_next_slot(self.clock(), interval) + margin)
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # storage hiccup: the next slot tries again
                log.warning("retention pass failed: %s", type(exc).__name__, exc_info=True)

    async def sweep_once(self, now: datetime | None = None) -> PassResult | None:
        """Run the pass of the slot holding ``now`` if this replica wins it; None when
        another replica has it (or had it)."""
        now = now or self.clock()
        run_id = model.run_id(model.slot_start(now, self.settings.sweep_seconds))
        claimed = await self.repo.claim_run(
            {"_id": run_id, "worker_id": self.worker_id, "started_at": now, "finished_at": None}
        )
        if not claimed:
            return None
        result = PassResult(run_id=run_id, cutoff=now - self.settings.window)
        try:
            # A pass deletes history by range (a full read on FerretDB): longer than the
            # client's per-operation bound is fine here, off the hot path.
            with pymongo.timeout(_PASS_SECONDS):
                await self._pass(result)
        finally:
            await self.repo.finish_run(
                run_id,
                {
                    "cutoff": result.cutoff,
                    "finished_at": self.clock(),
                    "removed": result.counts(),
                    "errors": result.errors,
                },
            )
        log.info("retention pass %s removed %s", run_id, result.counts())
        return result

    # ------------------------------------------------------------------ pass
    async def _pass(self, result: PassResult) -> None:
        cutoff = result.cutoff
        await self._step(result, "tasks", self._tasks(result))
        await self._step(result, "events", self._events(result, model.event_id_floor(cutoff)))
        await self._step(result, "outbox", self._outbox(result, cutoff))
        oldest_run = model.run_id(model.slot_start(cutoff, self.settings.sweep_seconds))
        await self._step(result, "runs", self._runs(result, oldest_run))

    async def _step(self, result: PassResult, name: str, work: Awaitable[None]) -> None:
        """One part of the pass; a failure is recorded and the next part still runs."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("retention: removing %s failed: %s", name, type(exc).__name__)
            result.errors.append(f"{name}: {type(exc).__name__}")

    async def _tasks(self, result: PassResult) -> None:
        cutoff = result.cutoff
        before = cutoff.timestamp()
        page_size = self.settings.batch
        kept: set[str] = set()
        batches: dict[str, bool] = {}  # batch id -> settled (read once per pass)
        while True:
            # Kept ids stay at the front of the index: ask past them.
            limit = len(kept) + page_size
            ids = await self.repo.oldest_task_ids(before, limit)
            fresh = [i for i in ids if i not in kept]
            if not fresh:
                return
            docs = await self.repo.tasks(fresh)
            gone = [i for i in fresh if i not in docs]
            expired = [d for d in docs.values() if model.task_expired(d, cutoff)]
            await self._settle_batches(batches, (d.get("batch_id") for d in expired))
            removable = [d for d in expired if not d.get("batch_id") or batches[str(d["batch_id"])]]
            removable_ids = {str(d["_id"]) for d in removable}
            kept.update(i for i in docs if i not in removable_ids)

            removed = await self.repo.delete_tasks(removable)
            batch_ids = {str(d["batch_id"]) for d in removable if d.get("batch_id")}
            await self.repo.forget([*removable_ids, *gone], batch_ids)
            result.tasks += removed.tasks
            result.attempts += removed.attempts
            result.forgotten += len(gone)
            result.kept = len(kept)
            RETENTION_REMOVED.labels("tasks").inc(removed.tasks)
            RETENTION_REMOVED.labels("attempts").inc(removed.attempts)

            if len(ids) < limit:
                return  # that was the end of the index before the cutoff
            if len(kept) >= KEPT_PAGES * page_size:
                log.warning(
                    "retention: %d tasks older than the window cannot be removed yet "
                    "(unfinished, or their batch is); the rest waits for the next pass",
                    len(kept),
                )
                return

    async def _settle_batches(self, known: dict[str, bool], batch_ids: Iterable[object]) -> None:
        wanted = sorted({str(b) for b in batch_ids if b} - known.keys())
        docs: list[Document | None] = list(
            await asyncio.gather(*(self.repo.batch(b) for b in wanted))
        )
        for batch_id, doc in zip(wanted, docs, strict=True):
            known[batch_id] = model.batch_settled(doc)

    async def _events(self, result: PassResult, id_floor: str) -> None:
        result.events = await self.repo.delete_events_before(id_floor)
        RETENTION_REMOVED.labels("events").inc(result.events)

    async def _outbox(self, result: PassResult, cutoff: datetime) -> None:
        result.outbox = await self.repo.delete_outbox_history_before(cutoff)
        RETENTION_REMOVED.labels("outbox").inc(result.outbox)

    async def _runs(self, result: PassResult, oldest_kept: str) -> None:
        result.runs = await self.repo.delete_runs_before(oldest_kept)
