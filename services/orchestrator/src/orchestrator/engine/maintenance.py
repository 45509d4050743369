"""The maintenance loop: output and progress events and document flushes of the runs,
cancel polling, the task index check and the queue sweep. Lease renewals have a loop
of their own (``leases.py``)."""

from __future__ import annotations

import asyncio
import logging

from .events import Events
from .execution import Execution
from .leases import Leases
from .state import EngineState
from .store import queue_entry

log = logging.getLogger(__name__)

_DOC_FLUSH_SECONDS = 1.0
_CANCEL_POLL_SECONDS = 0.5  # from Redis's copy of the requests
_CANCEL_FULL_POLL_SECONDS = 5.0  # from MongoDB, in case a copy was lost
# A lost task-queue entry (a crash between the task insert and its entry) is
# re-created by a sweep over the indexed unfinished tasks at start-up and then this often.
_QUEUE_SWEEP_SECONDS = 30.0
# How often the task index is checked (missing after a Redis restart, or a write failed).
_INDEX_CHECK_SECONDS = 5.0


class Maintenance:
    def __init__(
        self, state: EngineState, events: Events, leases: Leases, execution: Execution
    ) -> None:
        self.state = state
        self.store = state.store
        self.events = events
        self.leases = leases
        self.execution = execution
        self.swept = False  # the first queue sweep reads ``tasks`` in full, once
        self._next_sweep = 0.0
        self._next_index_check = 0.0

    async def loop(self) -> None:
        """Events, cancel requests and document flushes; never blocks the heartbeat."""
        tick = 0.25
        loop = asyncio.get_running_loop()
        last_cancel = last_doc = loop.time()
        next_full_cancel_poll = last_cancel + _CANCEL_FULL_POLL_SECONDS
        while True:
            await asyncio.sleep(tick)
            now_mono = loop.time()
            try:
                if now_mono >= self._next_index_check:
                    self._next_index_check = now_mono + _INDEX_CHECK_SECONDS
                    await self.check_index()
                if now_mono >= self._next_sweep:
                    self._next_sweep = now_mono + _QUEUE_SWEEP_SECONDS
                    await self.sweep_queue()
                await asyncio.gather(
                    *(self.events.flush_run(r) for r in list(self.state.runs.values()))
                )
                if now_mono - last_cancel >= _CANCEL_POLL_SECONDS:
                    last_cancel = now_mono
                    full = now_mono >= next_full_cancel_poll
                    if full:
                        next_full_cancel_poll = now_mono + _CANCEL_FULL_POLL_SECONDS
                    await self.leases.poll_cancels(fast=not full)
                if now_mono - last_doc >= _DOC_FLUSH_SECONDS:
                    last_doc = now_mono
                    await self.execution.flush_docs()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("engine maintenance failed")

    async def check_index(self) -> None:
        try:
            if await self.store.rebuild_index_if_needed(self.state.worker_id):
                self.state.wake.set()
        except Exception as exc:  # Redis away: tried again on the next check
            log.warning("task index check failed: %s", type(exc).__name__)

    async def sweep_queue(self) -> None:
        """Re-create queue entries of unfinished tasks that have none (a creator that
        died between the two inserts). An entry made for a task that has just become
        final is removed again by the takeover pass."""
        if self.swept:
            unfinished = await self.store.unfinished_tasks()
        else:
            unfinished = await self.store.unfinished_tasks_scan()
            self.swept = True
        if not unfinished:
            return
        queued = await self.store.queued_ids()
        missing = [queue_entry(t) for t in unfinished if t["_id"] not in queued]
        if missing:
            log.info("re-queueing %d tasks without a queue entry", len(missing))
            await self.store.enqueue(missing)
            self.state.wake.set()
