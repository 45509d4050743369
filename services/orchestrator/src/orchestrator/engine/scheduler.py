"""The scheduler: a tick reads the task queue, cancels tasks whose dependency ended
badly, looks for expired leases and repairs tasks whose document disagrees with their
attempt (the takeover pass), and claims ready Pending tasks in queue order; new plain
tasks may start straight from their submission (``start_now``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from provisioning_common.aio import wait_event
from provisioning_common.mongo import Document
from provisioning_common.timeutil import as_utc, utcnow

from . import metrics
from .attempts import Attempts
from .finals import Finals
from .model import (
    CANCELLED,
    COMPLETED,
    FAILED,
    FINAL_STATUSES,
    PENDING,
    RUNNING,
    attempt_id,
)
from .state import EngineState

log = logging.getLogger(__name__)

_MIN_TICK_SECONDS = 0.02
_FINALS_CACHE_MAX = 50_000


class Scheduler:
    def __init__(self, state: EngineState, finals: Finals, attempts: Attempts) -> None:
        self.state = state
        self.store = state.store
        self.settings = state.settings
        self.finals = finals
        self.attempts = attempts
        self._next_takeover_check = 0.0
        self._next_full_takeover_check = 0.0
        # Queued tasks a read showed (not) Pending against what the index says.
        self._seen_pending: set[str] = set()
        self._seen_not_pending: set[str] = set()

    async def loop(self) -> None:
        state = self.state
        while not state.stopping:
            state.wake.clear()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler tick failed")
            with contextlib.suppress(TimeoutError):
                await wait_event(state.wake, self.settings.poll_seconds)
            # Coalesce bursts of wake-ups (every submission and completion wakes us):
            # each tick scans the queue, which is not free on every backend.
            await asyncio.sleep(_MIN_TICK_SECONDS)

    def start_now(self, docs: Sequence[Document]) -> None:
        """Start plain new tasks (no dependency, group or delay) at once while slots
        are free, instead of after the next tick has read them back from the queue.
        Only while the last tick left slots free (it started every expired lease and
        ready task it saw), so older work is not passed over, except what was queued
        since (e.g. on another replica). The attempt insert decides the claim, as on
        every path."""
        state = self.state
        if not state.loops or state.stopping or not state.caught_up:
            return
        local = {run.task_id for run in state.runs.values()} | set(state.starting)
        for doc in docs:
            if state.free() <= 0:
                return
            plain = not (
                doc.get("dependencies") or doc.get("concurrency_key") or doc.get("not_before")
            )
            if plain and doc["_id"] not in local:
                self._launch(doc, {})

    def _takeover_interval(self) -> float:
        # An expired lease is looked for a few times per lease, not on every tick.
        return max(self.settings.poll_seconds, min(self.settings.lease_seconds / 5, 2.0))

    async def flush_dequeues(self) -> None:
        state = self.state
        if state.dequeue_pending:
            ids, state.dequeue_pending = state.dequeue_pending, set()
            try:
                await self.store.dequeue_many(ids)
            except Exception:
                state.dequeue_pending |= ids
                raise

    async def tick(self) -> None:
        try:
            await self._tick_once()
        finally:
            # Slots left free after a tick mean it started whatever it could (expired
            # leases first, then the queue in order): only then may new tasks start
            # straight from their submission (``start_now``) without passing over older work.
            self.state.caught_up = self.state.free() > 0

    async def _tick_once(self) -> None:
        state = self.state
        if state.free() <= 0:
            await self.flush_dequeues()
            return
        leaving = set(state.dequeue_pending)
        # The queue holds only tasks that are not final: small, unlike ``tasks``. It is
        # read while the tasks this replica finished are being removed from it.
        _, entries = await asyncio.gather(
            self.flush_dequeues(), self.store.queue_entries(self.settings.scan_limit * 10)
        )
        entries = [e for e in entries if e["_id"] not in leaving]
        if not entries:
            return
        queued = {str(e["_id"]) for e in entries}
        local = {run.task_id for run in state.runs.values()} | set(state.starting)
        await self._load_finals(
            d
            for e in entries
            if e["_id"] not in local
            for d in e.get("dependencies") or []
            if d not in queued and d not in state.finals
        )
        ready: list[Document] = []
        settled: list[Document] = []  # known final, entry not removed yet (by someone)
        doomed: list[tuple[Document, str]] = []
        for entry in entries:
            if entry["_id"] in local or entry["_id"] in state.dequeue_pending:
                continue
            if entry["_id"] in state.finals:
                settled.append(entry)
                continue
            dependencies = self._dependency_state(entry)
            if dependencies == "":
                ready.append(entry)
            elif dependencies is not None:
                doomed.append((entry, dependencies))
        # Which tasks are still Pending, from the index (one Redis round trip): a
        # pending task has no lease to take over, and only pending ones can be claimed.
        pending = await self._indexed_pending(queued)
        self._seen_pending &= queued
        self._seen_not_pending &= queued
        loop_now = time.monotonic()
        if loop_now >= self._next_takeover_check:
            watched = list(ready)
            # Once a lease, every queued task is read, whatever the index says (it may
            # lag, or come back from an old snapshot); in between, only the others.
            if pending is not None and loop_now < self._next_full_takeover_check:
                watched = [
                    e
                    for e in watched
                    if e["_id"] not in pending or e["_id"] in self._seen_not_pending
                ]
            else:
                self._next_full_takeover_check = loop_now + self.settings.lease_seconds
            watched += settled  # known final here: its entry is to be cleaned up
            # One point read per watched task: space passes out on a long queue.
            pause = max(self._takeover_interval(), 0.01 * len(watched))
            self._next_takeover_check = loop_now + pause
            await self._takeovers(watched)
        if doomed:
            await self._cancel_doomed(doomed)
        if state.free() > 0 and not state.stopping:
            if pending is not None:
                ready = [
                    e
                    for e in ready
                    if (e["_id"] in pending or e["_id"] in self._seen_pending)
                    and e["_id"] not in self._seen_not_pending
                ]
            await self._claim_pending(ready)

    async def _indexed_pending(self, task_ids: set[str]) -> set[str] | None:
        """The queued tasks the index holds as Pending; None when it cannot tell (then
        every queued task is read). The index can lag MongoDB by one write (a replica
        that died between the two): what a read shows otherwise is remembered in
        ``_seen_pending`` / ``_seen_not_pending`` until the task leaves the queue."""
        try:
            return await self.store.index.pending_among(sorted(task_ids))
        except Exception as exc:  # Redis away: read them all, as without an index
            log.debug("task index unavailable for the tick: %s", type(exc).__name__)
            return None

    async def _load_finals(self, task_ids: Iterable[str]) -> None:
        finals = self.state.finals
        wanted = set(task_ids)
        if not wanted:
            return
        if len(finals) > _FINALS_CACHE_MAX:
            finals.clear()
        for task_id, final in (await self.store.get_finals(wanted)).items():
            finals[task_id] = str(final["status"])

    def _dependency_state(self, entry: Document) -> str | None:
        """Empty: ready; None: wait; else the error that cancels it (a dependency ended badly)."""
        waiting = False
        for dep_id in entry.get("dependencies") or []:
            # A decided final is the truth even while its queue entry is still there.
            status = self.state.finals.get(dep_id)
            if status in (FAILED, CANCELLED):
                return f"Dependency {dep_id} {status}"
            if status != COMPLETED:
                waiting = True  # not final yet, or not created yet: wait
        return None if waiting else ""

    async def _cancel_doomed(self, doomed: Sequence[tuple[Document, str]]) -> None:
        tasks = await self.store.get_many(str(e["_id"]) for e, _ in doomed)
        for entry, error in doomed:
            task = tasks.get(str(entry["_id"]))
            if task is not None and task["status"] == PENDING:
                await self.finals.finalize(task, CANCELLED, error)
            elif task is None or task["status"] in FINAL_STATUSES:
                # A leftover entry: such a task never ran (a dependency never completed).
                await self.store.dequeue(str(entry["_id"]))

    async def _takeovers(self, ready: Sequence[Document]) -> None:
        """Find expired leases among queued tasks this replica does not run (a running
        task has all its dependencies completed, so ``ready`` holds them all), and
        clean up queue entries of tasks that are final."""
        tasks = await self.store.get_many(str(e["_id"]) for e in ready)
        for tid, task in tasks.items():
            if task["status"] == PENDING:
                self._seen_pending.add(tid)
                self._seen_not_pending.discard(tid)
        current = {
            attempt_id(tid, int(t.get("attempts") or 0)): t
            for tid, t in tasks.items()
            if t["status"] != PENDING
        }
        attempts = await self.store.get_attempts(current) if current else {}
        now = utcnow()
        await self._heal(current, attempts, now)
        for aid, task in current.items():
            att = attempts.get(aid)
            if task["status"] in FINAL_STATUSES and (att is None or att["status"] != RUNNING):
                self.state.finals[str(task["_id"])] = str(task["status"])
                await self.store.dequeue(str(task["_id"]))  # a leftover entry
        expired = [
            a
            for a in attempts.values()
            if a["status"] == RUNNING and as_utc(a["lease_expires_at"]) < now
        ]
        for att in sorted(expired, key=lambda a: as_utc(a["lease_expires_at"])):
            if self.state.stopping or self.state.free() <= 0:
                return
            await self.attempts.take_over(att)

    async def _heal(
        self, current: Mapping[str, Document], attempts: Mapping[str, Document], now: datetime
    ) -> None:
        """A task shown Running whose current attempt has ended holds a final record
        (its document write was lost, e.g. to a replica dying or a read-then-overwrite
        race on FerretDB) or is nobody's: the final record decides. Given the owner a
        grace of half a lease to write its own end first."""
        grace = timedelta(seconds=self.settings.lease_seconds / 2)
        stalled = [
            task
            for aid, task in current.items()
            if task["status"] == RUNNING
            and (att := attempts.get(aid)) is not None
            and att["status"] != RUNNING
            and att.get("ended_at") is not None
            and as_utc(att["ended_at"]) < now - grace
        ]
        if not stalled:
            return
        finals = await self.store.get_finals(str(t["_id"]) for t in stalled)
        for task in stalled:
            final = finals.get(str(task["_id"]))
            if final is not None:
                log.warning("task %s showed Running after its end: repaired", task["_id"])
                await self.finals.repair(task, final)
            else:
                # Its owner ended the attempt and died before deciding what next (a
                # retry or the final): hand it back; the next attempt is claimed as usual.
                log.warning("task %s showed Running with no attempt running: requeued", task["_id"])
                await self.store.update_task(str(task["_id"]), {"status": PENDING})
                metrics.REPAIRS.inc()

    async def _claim_pending(self, ready: Sequence[Document]) -> None:
        """Start ready tasks in queue order. Task documents are read only for as many
        candidates as there is room, and never for a group known full this tick."""
        state = self.state
        state.full_keys = set()
        held: dict[str, Document] = {}
        used: dict[str, int] = {}
        if any(e.get("concurrency_key") for e in ready):
            now = utcnow()
            for slot in await self.store.all_slots():
                held[str(slot["_id"])] = slot
                if as_utc(slot["lease_expires_at"]) >= now:
                    used[str(slot.get("key"))] = used.get(str(slot.get("key")), 0) + 1
            for key in state.starting.values():  # their slot may not be inserted yet
                if key:
                    used[key] = used.get(key, 0) + 1
        index = 0
        while state.free() > 0 and not state.stopping and index < len(ready):
            batch: list[Document] = []
            while index < len(ready) and len(batch) < state.free():
                entry = ready[index]
                index += 1
                key = entry.get("concurrency_key")
                if key:
                    if key in state.full_keys or used.get(key, 0) >= int(
                        entry.get("concurrency_limit") or 1
                    ):
                        continue
                    used[key] = used.get(key, 0) + 1  # reserved for this tick
                batch.append(entry)
            if not batch:
                return
            tasks = await self.store.get_many(str(e["_id"]) for e in batch)
            now = utcnow()
            for entry in batch:
                task = tasks.get(str(entry["_id"]))
                key = entry.get("concurrency_key")
                startable = (
                    task is not None
                    and task["status"] == PENDING
                    and (task.get("not_before") is None or as_utc(task["not_before"]) <= now)
                )
                if task is not None and task["status"] != PENDING:
                    # Running elsewhere or final although the index said Pending: the
                    # takeover pass watches it from now on.
                    self._seen_not_pending.add(str(task["_id"]))
                    self._seen_pending.discard(str(task["_id"]))
                if task is None or not startable or state.free() <= 0 or state.stopping:
                    if key:
                        used[key] -= 1  # its reservation was not needed
                    continue
                self._launch(task, held)

    def _launch(self, task: Document, held: dict[str, Document]) -> None:
        """Start ``task`` in the background; claims of different tasks are independent."""
        state = self.state
        task_id = str(task["_id"])
        state.starting[task_id] = task.get("concurrency_key")

        async def start() -> None:
            try:
                await self.attempts.start(task, int(task.get("attempts") or 0) + 1, held=held)
            except Exception:
                log.exception("could not start task %s", task_id)
            finally:
                state.starting.pop(task_id, None)

        handle = asyncio.create_task(start(), name=f"start-{task_id}")
        state.start_tasks.add(handle)
        handle.add_done_callback(state.start_tasks.discard)
