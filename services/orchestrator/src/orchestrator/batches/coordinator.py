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

from .service import PURPOSE_RUN, BatchContext, ledger_entry, reconcile

log = logging.getLogger(__name__)


class BatchCoordinator:
    def __init__(self, ctx: BatchContext, interval: float, min_spacing: float = 0.25) -> None:
        self.ctx = ctx
        self.interval = interval
        # A busy batch finishes many tasks a second; one pass per spacing covers them all.
        self.min_spacing = min_spacing
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self.last_tick: float | None = None  # monotonic time of the last full pass
        self.last_error: str | None = None

    async def on_task_final(self, task: Mapping[str, Any]) -> None:
        if (task.get("status") == "Completed" and task.get("compensation")
                and (task.get("metadata") or {}).get("purpose", PURPOSE_RUN) == PURPOSE_RUN):
            # Any applied task with a compensation enters the ledger, batch or not.
            await self.ctx.ledger.record_applied(ledger_entry(task, self.ctx.cli))
            self.ctx.ledgered.add(str(task["_id"]))
        batch_id = task.get("batch_id")
        if batch_id:
            self._dirty.add(str(batch_id))
            self._wake.set()

    def poke(self, batch_id: str) -> None:
        self._dirty.add(batch_id)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batch-coordinator")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def healthy(self) -> bool:
        """Running, and its last full pass is recent (three intervals, at least 5 s)."""
        if self._task is None or self._task.done() or self.last_tick is None:
            return False
        return time.monotonic() - self.last_tick <= max(5.0, 3 * self.interval)

    async def _run(self) -> None:
        next_full = 0.0
        while True:
            try:
                now = time.monotonic()
                if now >= next_full:
                    ids = await self.ctx.repo.active_ids()
                    self._dirty.difference_update(ids)
                    for batch_id in ids:
                        await self._one(batch_id)
                    self.last_tick = time.monotonic()
                    self.last_error = None
                    next_full = self.last_tick + self.interval
                if self._dirty:
                    await asyncio.sleep(self.min_spacing)
                while self._dirty:
                    await self._one(self._dirty.pop())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # storage hiccup: keep going, report via health
                self.last_error = type(exc).__name__
                log.warning("batch coordinator pass failed: %s", exc)
                await asyncio.sleep(min(self.interval, 1.0))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_full - time.monotonic()))

    async def _one(self, batch_id: str) -> None:
        try:
            await reconcile(self.ctx, batch_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconciling batch %s failed", batch_id)
