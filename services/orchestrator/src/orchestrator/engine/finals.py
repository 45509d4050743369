"""Final decisions: a unique insert in ``task_finals`` decides a task's final status, so
exactly one replica finalizes a task, announces it and calls the final listeners. A
task document that disagrees with its final record is repaired from it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from provisioning_common.mongo import Document
from provisioning_common.timeutil import as_utc, utcnow

from . import metrics
from .events import Events
from .model import TaskStatus, wire_status
from .state import EngineState

log = logging.getLogger(__name__)

FinalListener = Callable[[Document], Awaitable[None]]


class Finals:
    def __init__(self, state: EngineState, events: Events) -> None:
        self.state = state
        self.store = state.store
        self.settings = state.settings
        self.events = events
        self.listeners: list[FinalListener] = []

    async def finalize(
        self,
        task: Document,
        status: TaskStatus,
        error: str | None,
        *,
        attempt: tuple[str, Mapping[str, Any]] | None = None,
        extra: Mapping[str, Any] | None = None,
        won_attempt: tuple[str, Mapping[str, Any]] | None = None,
    ) -> bool:
        """Decide the task's final status; False when someone else decided first.
        ``attempt`` is our own attempt's end (written either way); ``won_attempt``
        is written only when this call decides (a taken-over attempt)."""
        state = self.state
        task_id = str(task["_id"])
        now = utcnow()
        won = await self.store.claim_final(
            {
                "_id": task_id,
                "status": status,
                "error": error,
                "completed_at": now,
                "worker_id": state.worker_id,
            }
        )
        if not won:
            if attempt is not None:
                await self.store.update_attempt(attempt[0], dict(attempt[1]))
            final = await self.store.get_final(task_id)
            if final is not None:
                state.finals[task_id] = str(final["status"])
                await self.repair(task, final, extra)
            return False
        state.finals[task_id] = status
        fields = {"status": status, "error": error, "completed_at": now, **(extra or {})}
        for closing in (attempt, won_attempt):
            if closing is not None:
                await self.store.update_attempt(closing[0], dict(closing[1]))
        # Counted before the final is visible: whoever sees it final sees it counted.
        metrics.TASKS_TOTAL.labels(wire_status(status)).inc()
        started = task.get("started_at")
        if attempt is not None and started is not None:  # a run of ours ended
            metrics.TASK_DURATION.observe((now - as_utc(started)).total_seconds())
        await self.store.update_task(task_id, fields)
        merged = {**task, **fields}
        # Dependents may start now (this replica knows the final): do not wait for the
        # event and the listeners. Only now (attempt closed, task final) does the task
        # leave the queue: batched by the scheduler, at once where none runs.
        state.wake.set()
        if state.loops:
            state.dequeue_pending.add(task_id)
            await self.events.emit_status(merged, status)
        else:
            await asyncio.gather(
                self.events.emit_status(merged, status), self.store.dequeue(task_id)
            )
        await self.notify(merged)
        return True

    async def notify(self, task: Document) -> None:
        for listener in self.listeners:
            try:
                await listener(task)
            except Exception:
                log.exception("final listener failed for task %s", task["_id"])

    async def repair(
        self,
        task: Document,
        final: Document,
        extra: Mapping[str, Any] | None = None,
        *,
        dequeue: bool = True,
    ) -> None:
        """The final decision is the truth: a late write (Running) is overwritten, and
        the task leaves the queue (the invariant every pass restores: a task with a
        final record is final in its document and absent from the queue) unless
        ``dequeue`` is False (an attempt of it still shows Running: the takeover pass,
        which watches queued tasks only, closes it first)."""
        state = self.state
        task_id = str(task["_id"])
        state.finals[task_id] = str(final["status"])
        if task.get("status") != final["status"] or extra:
            fields = {
                "status": final["status"],
                "error": final.get("error"),
                "completed_at": final.get("completed_at"),
                **(extra or {}),
            }
            await self.store.update_task(task_id, fields)
            metrics.REPAIRS.inc()
            decided = final.get("completed_at")
            grace = timedelta(seconds=self.settings.lease_seconds / 2)
            if (
                task.get("status") != final["status"]
                and decided is not None
                and as_utc(decided) < utcnow() - grace
            ):
                # Its decider died (or lost the store) before announcing it, or it would
                # have by now: announce it. Listeners and consumers take a final twice.
                merged = {**task, **fields}
                await self.events.emit_status(merged, str(final["status"]))
                await self.notify(merged)
        if not dequeue:
            return
        if state.loops:
            state.dequeue_pending.add(task_id)
        else:
            await self.store.dequeue(task_id)
