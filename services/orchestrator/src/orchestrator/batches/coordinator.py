"""The batch coordinator: a background task on every replica that keeps batch
documents in line with their tasks. It reacts at once to a task's final status
decided on this replica (the engine's final listener) and polls every active
batch on an interval, which covers the other replicas and restarts after kill -9
(everything it does is derived from stored tasks and decided by claims)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from orchestrator.rollback.ledger import LedgerRecorder
from provisioning_common.aio import BackgroundTasks, wait_event

from .model import needs_coordinator
from .reconcile import BatchReconciler
from .repository import BatchRepository

log = logging.getLogger(__name__)


class BatchCoordinator:
    def __init__(
        self,
        *,
        repo: BatchRepository,
        reconciler: BatchReconciler,
        ledger: LedgerRecorder,
        interval: float,
        min_spacing: float = 0.25,
    ) -> None:
        self.repo = repo
        self.reconciler = reconciler
        self.ledger = ledger
        self.interval = interval
        # A busy batch finishes many tasks a second; one pass per spacing covers them all.
        self.min_spacing = min_spacing
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()
        self._not_before: dict[str, float] = {}  # monotonic time of a batch's next pass
        self._task: asyncio.Task[None] | None = None
        self._loops = BackgroundTasks()
        self.last_tick: float | None = None  # monotonic time of the last full pass
        self.last_error: str | None = None

    async def on_task_final(self, task: Mapping[str, Any]) -> None:
        """The engine's final listener: ledger the task, look at its batch now."""
        await self.ledger.on_task_final(task)
        batch_id = task.get("batch_id")
        if batch_id:
            self._dirty.add(str(batch_id))
            self._wake.set()

    def poke(self, batch_id: str) -> None:
        self._dirty.add(batch_id)
        self._wake.set()

    def start(self) -> None:
        self._task = self._loops.start(self._run(), "batch-coordinator")

    async def stop(self) -> None:
        await self._loops.stop()
        self._task = None

    def healthy(self) -> bool:
        """Running, and its last full pass is recent (three intervals, at least 5 s)."""
        if self._task is None or self._task.done() or self.last_tick is None:
            return False
        return time.monotonic() - self.last_tick <= max(5.0, 3 * self.interval)

    async def _mark_active(self) -> None:
        """Once at start: mark batches active by their document whose creator died
        before marking them (a full read, never repeated)."""
        for batch_id in await self.repo.active_ids():
            await self.repo.activate(batch_id)

    async def _run(self) -> None:
        next_full = 0.0
        marked = False
        while True:
            try:
                now = time.monotonic()
                if not marked:
                    await self._mark_active()
                    marked = True
                if now >= next_full:
                    self._dirty.update(await self.repo.active_set_ids())
                    self.last_tick = now
                    self.last_error = None
                    next_full = now + self.interval
                    self._forget_idle(now)
                for batch_id in [b for b in self._dirty if self._not_before.get(b, 0.0) <= now]:
                    self._dirty.discard(batch_id)
                    await self._one(batch_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # storage hiccup: keep going, report via health
                self.last_error = type(exc).__name__
                log.warning("batch coordinator pass failed: %s", exc)
                await asyncio.sleep(min(self.interval, 1.0))
            self._wake.clear()
            wake_at = min([next_full, *(self._not_before.get(b, 0.0) for b in self._dirty)])
            with contextlib.suppress(TimeoutError):
                await wait_event(self._wake, wake_at - time.monotonic())

    def _forget_idle(self, now: float) -> None:
        for batch_id, at in list(self._not_before.items()):
            if at < now - 60 and batch_id not in self._dirty:
                del self._not_before[batch_id]

    async def _one(self, batch_id: str) -> None:
        started = time.monotonic()
        try:
            await self.reconciler.reconcile(batch_id)
            batch = await self.repo.get(batch_id)
            if batch is None or not needs_coordinator(batch):
                await self.repo.deactivate(batch_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconciling batch %s failed", batch_id)
        # Pace each batch: a pass that took d seconds is not repeated for 2d, so
        # the coordinator keeps at most about a third of the database's time.
        took = time.monotonic() - started
        self._not_before[batch_id] = time.monotonic() + max(self.min_spacing, 2 * took)
