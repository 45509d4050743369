"""The durable, multi-replica task engine (DESIGN §5).

A replica claims a ready task by inserting its attempt document
(``_id = <task_id>:<n>``); the unique ``_id`` decides the winner. The owner
heartbeats the attempt's lease; an expired lease is taken over by inserting attempt
``n+1`` (or the task fails after its attempt limit). The final status is decided by
a unique insert in ``task_finals``, so exactly one replica finalizes a task, emits its
final event and calls the final listeners. Cancellation is a request the owner acts on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from provisioning_common.aio import wait_event
from provisioning_common.mongo import Document
from provisioning_common.timeutil import as_utc, utcnow

from . import metrics
from .index import owner_of
from .model import (
    ATTEMPT_LOST,
    ATTEMPT_RELEASED,
    ATTEMPT_TIMED_OUT,
    CANCELLED,
    COMPLETED,
    FAILED,
    FINAL_STATUSES,
    PENDING,
    RUNNING,
    Defaults,
    TaskSpec,
    attempt_id,
    backoff_seconds,
    effective_attempts,
    slot_id,
    task_document,
    wire_status,
)
from .process import ProcessResult, TailBuffer, clean_env, run_process
from .settings import EngineSettings
from .store import TaskStore, queue_entry

log = logging.getLogger(__name__)

FinalListener = Callable[[Document], Awaitable[None]]
_OUTPUT_EVENT_LINES = 200
_DOC_FLUSH_SECONDS = 1.0
_CANCEL_POLL_SECONDS = 0.5  # from Redis's copy of the requests
_CANCEL_FULL_POLL_SECONDS = 5.0  # from MongoDB, in case a copy was lost
_MIN_TICK_SECONDS = 0.02
# A lost task-queue entry (a crash between the task insert and its entry) is
# re-created by a sweep over the indexed unfinished tasks at start-up and then this often.
_QUEUE_SWEEP_SECONDS = 30.0
# How often the task index is checked (missing after a Redis restart, or a write failed).
_INDEX_CHECK_SECONDS = 5.0
_FINALS_CACHE_MAX = 50_000


def _lease_expired(attempt: Document) -> str:
    return f"Lease expired (worker {attempt.get('worker_id')} stopped heartbeating)"


class EventSink(Protocol):
    async def publish(
        self, event_type: str, data: Mapping[str, Any], metadata: Mapping[str, Any] | None = None
    ) -> Any: ...


@dataclass
class Run:
    """One attempt running on this replica."""

    task: Document
    attempt: int
    slot: str | None
    lease_expires: datetime
    output: TailBuffer
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None  # cancel | lost | release
    cancel_reason: str | None = None
    progress: float = 0.0
    current_step: str | None = None
    progress_dirty: bool = False
    doc_dirty: bool = False
    lines: list[str] = field(default_factory=list)
    handle: asyncio.Task[None] | None = None
    announced: asyncio.Task[None] | None = None  # the Running event, stored meanwhile
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    done: bool = False
    exited: bool = False  # the process has ended (its slot is free)

    @property
    def task_id(self) -> str:
        return str(self.task["_id"])

    @property
    def aid(self) -> str:
        return attempt_id(self.task_id, self.attempt)

    def halt(self, reason: str, message: str | None = None) -> None:
        if self.reason is None:
            self.reason = reason
            self.cancel_reason = message
        self.stop.set()


class Engine:
    def __init__(
        self,
        store: TaskStore,
        settings: EngineSettings,
        sink: EventSink,
        *,
        worker_id: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.sink = sink
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.defaults = Defaults(settings.cli, settings.timeout_seconds, settings.max_attempts)
        self._child_env = clean_env(
            os.environ if environ is None else environ,
            settings.env_allowlist,
            settings.env_prefixes,
        )
        self.runs: dict[str, Run] = {}  # attempt id -> run
        self._listeners: list[FinalListener] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._loops: list[asyncio.Task[None]] = []
        # Final statuses never change once decided: cache them for dependency checks.
        self._finals: dict[str, str] = {}
        self._full_keys: set[str] = set()  # concurrency groups found full this tick
        self._next_takeover_check = 0.0
        self._next_full_takeover_check = 0.0
        self._caught_up = False  # see _tick
        self._next_sweep = 0.0
        self._next_index_check = 0.0
        self._swept = False  # the first queue sweep reads ``tasks`` in full, once
        # Queue entries of tasks this replica finalized, deleted in one go per tick.
        self._dequeue_pending: set[str] = set()
        # Queued tasks a read showed (not) Pending against what the index says.
        self._seen_pending: set[str] = set()
        self._seen_not_pending: set[str] = set()
        # Starts in flight (claims and the Running write), in the background so that a
        # slow write never holds up the next tick: task id -> its concurrency key.
        self._starting: dict[str, str | None] = {}
        self._start_tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------- public API
    def add_final_listener(self, listener: FinalListener) -> None:
        self._listeners.append(listener)

    def wake(self) -> None:
        self._wake.set()

    @property
    def swept(self) -> bool:
        """The start-up sweep (a full read of ``tasks``, done once by the maintenance
        loop soon after start) is behind us: from here on, steady state."""
        return self._swept

    async def create_task(self, spec: TaskSpec) -> str:
        return (await self.create_tasks([spec]))[0]

    async def create_tasks(self, specs: Sequence[TaskSpec]) -> list[str]:
        now = utcnow()
        docs = [task_document(spec, self.defaults, now) for spec in specs]
        inserted = set(await self.store.insert_tasks(docs))
        # Only new tasks get a queue entry and a Pending event: an existing one
        # (a racing replica created it) may be running or final already.
        new = [d for d in docs if d["_id"] in inserted]
        await asyncio.gather(
            self.store.enqueue([queue_entry(d) for d in new]),
            self._emit_statuses([(doc, PENDING) for doc in new]),
        )
        self._start_now(new)
        self.wake()
        return [str(d["_id"]) for d in docs]

    def _start_now(self, docs: Sequence[Document]) -> None:
        """Start plain new tasks (no dependency, group or delay) at once while slots
        are free, instead of after the next tick has read them back from the queue.
        Only while the last tick left slots free (it started every expired lease and
        ready task it saw), so older work is not passed over, except what was queued
        since (e.g. on another replica). The attempt insert decides the claim, as on
        every path."""
        if not self._loops or self._stopping or not self._caught_up:
            return
        local = {run.task_id for run in self.runs.values()} | set(self._starting)
        for doc in docs:
            if self._free() <= 0:
                return
            plain = not (
                doc.get("dependencies") or doc.get("concurrency_key") or doc.get("not_before")
            )
            if plain and doc["_id"] not in local:
                self._launch(doc, {})

    async def cancel(self, task_id: str, reason: str = "Cancelled by user") -> str:
        """``cancelled`` (decided now), ``requested`` (the owner will stop it),
        ``final`` (already finished) or ``not_found``."""
        task = await self.store.get(task_id)
        if task is None:
            return "not_found"
        if task["status"] in FINAL_STATUSES:
            return "final"
        await self.store.request_cancel(task_id, reason, utcnow())
        for run in list(self.runs.values()):
            if run.task_id == task_id:
                run.halt("cancel", reason)
                return "requested"
        task = await self.store.get(task_id)
        if task is None:
            return "not_found"
        if task["status"] == PENDING:
            # A worker that claims it meanwhile re-reads the flag (or the final) and stops.
            return "cancelled" if await self._finalize(task, CANCELLED, reason) else "final"
        if task["status"] in FINAL_STATUSES:
            return "final"
        return "requested"

    # -------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        await self.store.ensure_indexes()
        await self._check_index()
        if not self.settings.enabled:
            return
        self._loops = [
            asyncio.create_task(self._scheduler(), name="engine-scheduler"),
            asyncio.create_task(self._maintenance(), name="engine-maintenance"),
            asyncio.create_task(self._heartbeats(), name="engine-heartbeats"),
        ]

    async def stop(self) -> None:
        """Stop claiming, let running tasks finish within the grace period, then
        hand the rest back (their attempt ends ``Released``, the task is Pending again)."""
        self._stopping = True
        self._wake.set()
        if self._loops:
            # Let a claim in progress complete (cancelling it mid-way could leave a
            # Running task without a run); the loop exits at its next check.
            try:
                async with asyncio.timeout(15):
                    await asyncio.shield(self._loops[0])
            except TimeoutError:
                self._loops[0].cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._loops[0]
            if self._start_tasks:
                await asyncio.wait(list(self._start_tasks), timeout=15)
        handles = [r.handle for r in self.runs.values() if r.handle is not None]
        if handles:
            await asyncio.wait(handles, timeout=self.settings.shutdown_grace_seconds)
        for run in list(self.runs.values()):
            run.halt("release")
        handles = [r.handle for r in self.runs.values() if r.handle is not None]
        if handles:
            await asyncio.wait(handles, timeout=self.settings.kill_grace_seconds + 10)
        for loop in self._loops[1:]:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        self._loops = []
        try:
            await self._flush_dequeues()
        except Exception:  # the entries are leftovers now; other replicas remove them
            log.warning("could not remove finished tasks from the queue")

    # -------------------------------------------------------------- scheduler
    async def _scheduler(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler tick failed")
            with contextlib.suppress(TimeoutError):
                await wait_event(self._wake, self.settings.poll_seconds)
            # Coalesce bursts of wake-ups (every submission and completion wakes us):
            # each tick scans the queue, which is not free on every backend.
            await asyncio.sleep(_MIN_TICK_SECONDS)

    def _free(self) -> int:
        # A slot is a process: a run whose process has exited frees it while its end
        # is still being recorded.
        running = sum(1 for run in self.runs.values() if not run.exited)
        return self.settings.concurrency - running - len(self._starting)

    def _takeover_interval(self) -> float:
        # An expired lease is looked for a few times per lease, not on every tick.
        return max(self.settings.poll_seconds, min(self.settings.lease_seconds / 5, 2.0))

    async def _flush_dequeues(self) -> None:
        if self._dequeue_pending:
            ids, self._dequeue_pending = self._dequeue_pending, set()
            try:
                await self.store.dequeue_many(ids)
            except Exception:
                self._dequeue_pending |= ids
                raise

    async def _tick(self) -> None:
        try:
            await self._tick_once()
        finally:
            # Slots left free after a tick mean it started whatever it could (expired
            # leases first, then the queue in order): only then may new tasks start
            # straight from their submission (``_start_now``) without passing over older work.
            self._caught_up = self._free() > 0

    async def _tick_once(self) -> None:
        if self._free() <= 0:
            await self._flush_dequeues()
            return
        leaving = set(self._dequeue_pending)
        # The queue holds only tasks that are not final: small, unlike ``tasks``. It is
        # read while the tasks this replica finished are being removed from it.
        _, entries = await asyncio.gather(
            self._flush_dequeues(), self.store.queue_entries(self.settings.scan_limit * 10)
        )
        entries = [e for e in entries if e["_id"] not in leaving]
        if not entries:
            return
        queued = {str(e["_id"]) for e in entries}
        local = {run.task_id for run in self.runs.values()} | set(self._starting)
        await self._load_finals(
            d
            for e in entries
            if e["_id"] not in local
            for d in e.get("dependencies") or []
            if d not in queued and d not in self._finals
        )
        ready: list[Document] = []
        settled: list[Document] = []  # known final, entry not removed yet (by someone)
        doomed: list[tuple[Document, str]] = []
        for entry in entries:
            if entry["_id"] in local or entry["_id"] in self._dequeue_pending:
                continue
            if entry["_id"] in self._finals:
                settled.append(entry)
                continue
            state = self._dependency_state(entry)
            if state == "":
                ready.append(entry)
            elif state is not None:
                doomed.append((entry, state))
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
        if self._free() > 0 and not self._stopping:
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
        wanted = set(task_ids)
        if not wanted:
            return
        if len(self._finals) > _FINALS_CACHE_MAX:
            self._finals.clear()
        for task_id, final in (await self.store.get_finals(wanted)).items():
            self._finals[task_id] = str(final["status"])

    def _dependency_state(self, entry: Document) -> str | None:
        """Empty: ready; None: wait; else the error that cancels it (a dependency ended badly)."""
        waiting = False
        for dep_id in entry.get("dependencies") or []:
            # A decided final is the truth even while its queue entry is still there.
            status = self._finals.get(dep_id)
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
                await self._finalize(task, CANCELLED, error)
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
                self._finals[str(task["_id"])] = str(task["status"])
                await self.store.dequeue(str(task["_id"]))  # a leftover entry
        expired = [
            a
            for a in attempts.values()
            if a["status"] == RUNNING and as_utc(a["lease_expires_at"]) < now
        ]
        for att in sorted(expired, key=lambda a: as_utc(a["lease_expires_at"])):
            if self._stopping or self._free() <= 0:
                return
            await self._take_over(att)

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
                await self._repair(task, final)
            else:
                # Its owner ended the attempt and died before deciding what next (a
                # retry or the final): hand it back; the next attempt is claimed as usual.
                log.warning("task %s showed Running with no attempt running: requeued", task["_id"])
                await self.store.update_task(str(task["_id"]), {"status": PENDING})
                metrics.REPAIRS.inc()

    async def _take_over(self, att: Document) -> None:
        if att["_id"] in self.runs:
            return
        now = utcnow()
        # Past this, an owner that is still alive has stopped itself (_check_own_leases).
        long_dead = now - timedelta(seconds=self.settings.lease_seconds)
        n = int(att["attempt"])
        lease_end = as_utc(att["lease_expires_at"])
        lost = {"status": ATTEMPT_LOST, "ended_at": lease_end, "error": _lease_expired(att)}
        task = await self.store.get(att["task_id"])
        final = await self.store.get_final(att["task_id"]) if task is not None else None
        superseded = await self.store.existing_attempts([attempt_id(att["task_id"], n + 1)])
        if task is None or final is not None or superseded:
            # A stale record. Its owner may still be writing its end (a slow
            # heartbeat), so only close it once the owner must have given up:
            # one writer per document (FerretDB updates are read-then-overwrite).
            if lease_end < long_dead:
                await self.store.update_attempt(att["_id"], lost)
                if task is None or final is not None:
                    await self.store.dequeue(str(att["task_id"]))
            if task is not None and final is not None and task["status"] != final["status"]:
                # The entry stays until the attempt is closed, or nobody would close it.
                await self._repair(task, final, dequeue=lease_end < long_dead)
            return
        if effective_attempts(task, n) >= int(task["max_attempts"]):
            error = (
                f"Lease of attempt {n} expired (worker stopped); "
                f"attempt limit {task['max_attempts']} reached"
            )
            if await self._finalize(task, FAILED, error, won_attempt=(att["_id"], lost)):
                slot = await self.store.slot_of_task(task["_id"])
                if slot is not None:
                    await self.store.release_slot(slot["_id"], task["_id"])
            return
        if await self._start_attempt(task, n + 1, previous=att):
            metrics.TAKEOVERS.inc()

    async def _claim_pending(self, ready: Sequence[Document]) -> None:
        """Start ready tasks in queue order. Task documents are read only for as many
        candidates as there is room, and never for a group known full this tick."""
        self._full_keys = set()
        held: dict[str, Document] = {}
        used: dict[str, int] = {}
        if any(e.get("concurrency_key") for e in ready):
            now = utcnow()
            for slot in await self.store.all_slots():
                held[str(slot["_id"])] = slot
                if as_utc(slot["lease_expires_at"]) >= now:
                    used[str(slot.get("key"))] = used.get(str(slot.get("key")), 0) + 1
            for key in self._starting.values():  # their slot may not be inserted yet
                if key:
                    used[key] = used.get(key, 0) + 1
        index = 0
        while self._free() > 0 and not self._stopping and index < len(ready):
            batch: list[Document] = []
            while index < len(ready) and len(batch) < self._free():
                entry = ready[index]
                index += 1
                key = entry.get("concurrency_key")
                if key:
                    if key in self._full_keys or used.get(key, 0) >= int(
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
                if task is None or not startable or self._free() <= 0 or self._stopping:
                    if key:
                        used[key] -= 1  # its reservation was not needed
                    continue
                self._launch(task, held)

    def _launch(self, task: Document, held: dict[str, Document]) -> None:
        """Start ``task`` in the background; claims of different tasks are independent."""
        task_id = str(task["_id"])
        self._starting[task_id] = task.get("concurrency_key")

        async def start() -> None:
            try:
                await self._start_attempt(task, int(task.get("attempts") or 0) + 1, held=held)
            except Exception:
                log.exception("could not start task %s", task_id)
            finally:
                self._starting.pop(task_id, None)

        handle = asyncio.create_task(start(), name=f"start-{task_id}")
        self._start_tasks.add(handle)
        handle.add_done_callback(self._start_tasks.discard)

    # ------------------------------------------------------------------ slots
    async def _acquire_slot(
        self,
        task: Document,
        aid: str,
        expires: datetime,
        takeover: bool,
        held_slots: dict[str, Document] | None = None,
    ) -> str | None:
        """None: no concurrency group; "": every slot taken; else the slot id."""
        key = task.get("concurrency_key")
        if not key:
            return None
        fields = {"attempt_id": aid, "worker_id": self.worker_id, "lease_expires_at": expires}
        mine = await self.store.slot_of_task(task["_id"]) if takeover else None
        if mine is not None:  # a taken-over attempt inherits its predecessor's slot
            await self.store.adopt_slot(mine["_id"], fields)
            return str(mine["_id"])
        now = utcnow()
        # The tick's snapshot of held slots spares a query per task; a slot taken
        # since then just loses the unique insert below. Concurrent starts of one
        # tick mark the slot they try in it, so they do not all race for the same one.
        held = (
            held_slots
            if held_slots is not None
            else {d["_id"]: d for d in await self.store.slots_for_key(key)}
        )
        for n in range(int(task.get("concurrency_limit") or 1)):
            sid = slot_id(key, n)
            current = held.get(sid)
            if current is not None:
                if as_utc(current["lease_expires_at"]) >= now:
                    continue
                await self.store.delete_expired_slot(sid, current["lease_expires_at"])
            doc = {"_id": sid, "key": key, "task_id": task["_id"], **fields}
            held[sid] = doc
            if await self.store.claim_slot(doc):
                return sid
        self._full_keys.add(str(key))
        return ""  # every slot is taken

    # --------------------------------------------------------------- attempts
    async def _start_attempt(
        self,
        task: Document,
        n: int,
        previous: Document | None = None,
        held: dict[str, Document] | None = None,
    ) -> bool:
        task_id = str(task["_id"])
        aid = attempt_id(task_id, n)
        now = utcnow()
        expires = now + timedelta(seconds=self.settings.lease_seconds)
        slot = await self._acquire_slot(task, aid, expires, previous is not None, held)
        if slot == "":
            return False
        won = await self.store.claim_attempt(
            {
                "_id": aid,
                "task_id": task_id,
                "attempt": n,
                "worker_id": self.worker_id,
                "status": RUNNING,
                "started_at": now,
                "ended_at": None,
                "heartbeat_at": now,
                "lease_expires_at": expires,
                "exit_code": None,
                "error": None,
            }
        )
        if not won:
            if slot and previous is None:
                await self.store.release_slot(slot, task_id)
            if previous is None:
                # The task still shows Pending although attempt n exists: its claimer
                # may have died before marking it Running. Take over once the lease is gone.
                att = await self.store.get_attempt(aid)
                if (
                    att is not None
                    and att["status"] == RUNNING
                    and as_utc(att["lease_expires_at"]) < utcnow()
                ):
                    await self._take_over(att)
            return False
        if previous is not None:
            await self.store.update_attempt(
                previous["_id"],
                {
                    "status": ATTEMPT_LOST,
                    "ended_at": as_utc(previous["lease_expires_at"]),
                    "error": _lease_expired(previous),
                },
            )
        # Re-read: a cancel or a final decision may have landed after we read the task
        # (the final from MongoDB, the truth; the cancel request from its Redis copy,
        # which the owner's periodic full read backs up).
        final, cancels = await asyncio.gather(
            self.store.get_final(task_id), self.store.cancel_requests([task_id])
        )
        cancel = cancels.get(task_id)
        fresh = dict(task)
        if final is not None or cancel is not None:
            await self.store.update_attempt(
                aid, {"status": CANCELLED, "ended_at": utcnow(), "error": "Cancelled before start"}
            )
            if slot:
                await self.store.release_slot(slot, task_id)
            if final is not None:
                await self._repair(fresh, final)
            else:
                await self._finalize(fresh, CANCELLED, cancel or "Cancelled")
            return False
        fields = {
            "status": RUNNING,
            "attempts": n,
            "not_before": None,
            "error": None,
            "started_at": fresh.get("started_at") or now,
        }
        await self.store.update_task(task_id, fields)
        fresh.update(fields)
        lease = timedelta(seconds=self.settings.lease_seconds)
        if utcnow() > expires - lease / 2:
            # The claim and the writes above were slow (a loaded database): renew before
            # the process starts, or it would start on a lease that is (nearly) spent and
            # be stopped as "lost" by the next lease check while the task shows Running.
            renewed = utcnow()
            expires = renewed + lease
            await self.store.renew_leases([aid], expires, renewed)
            if slot:
                await self.store.renew_slots([slot], expires)
        run = Run(
            task=fresh,
            attempt=n,
            slot=slot,
            lease_expires=expires,
            output=TailBuffer(self.settings.output_max_bytes),
            progress=float(fresh.get("progress") or 0.0),
        )
        self.runs[aid] = run
        metrics.RUNNING_TASKS.inc()
        # The Running event is stored while the process starts; _execute waits for it
        # before recording the end, so the events keep their order.
        run.announced = asyncio.create_task(self._emit_status(fresh, RUNNING))
        run.handle = asyncio.create_task(self._execute(run), name=f"task-{aid}")
        return True

    async def _execute(self, run: Run) -> None:
        task = run.task
        argv = [self.settings.cli, *task["subcommand"], *task["args"]]

        def on_output(text: str) -> None:
            run.output.append(text)
            run.lines.append(text.rstrip("\n"))
            run.doc_dirty = True

        def on_progress(pct: float, step: str) -> None:
            run.progress, run.current_step = pct, step or run.current_step
            run.progress_dirty = run.doc_dirty = True

        try:
            result = await run_process(
                argv,
                # At-least-once: a task may run again when its replica dies between the
                # CLI's exit and the recorded end; these let the CLI make that harmless.
                env={
                    **self._child_env,
                    "PROVISIONING_TASK_ID": run.task_id,
                    "PROVISIONING_ATTEMPT": str(run.attempt),
                },
                timeout=float(task["timeout_seconds"]),
                kill_grace=self.settings.kill_grace_seconds,
                stop=run.stop,
                on_output=on_output,
                on_progress=on_progress,
            )
            run.exited = True
            self._wake.set()
            if run.announced is not None:
                await run.announced
            await self._flush_events(run)
            async with run.lock:
                run.done = True
                await self._conclude(run, result)
        except Exception:
            log.exception("task %s attempt %s: could not record its end", run.task_id, run.attempt)
        finally:
            self.runs.pop(run.aid, None)
            metrics.RUNNING_TASKS.dec()
            self._wake.set()

    async def _conclude(self, run: Run, result: ProcessResult) -> None:
        task, now = run.task, utcnow()
        output = run.output.text() or None
        if run.reason is None and await self.store.existing_attempts(
            [attempt_id(run.task_id, run.attempt + 1)]
        ):
            run.reason = "lost"  # our lease lapsed and another replica took over
        if run.reason == "lost":
            return  # another replica owns the task now; it records everything
        if run.reason == "release":
            await self.store.update_attempt(
                run.aid,
                {
                    "status": ATTEMPT_RELEASED,
                    "ended_at": now,
                    "exit_code": result.exit_code,
                    "error": "Handed back at shutdown",
                },
            )
            await self.store.increment_released(run.task_id)
            await self.store.update_task(run.task_id, {"status": PENDING, "output": output})
            await self._release(run)
            await self._emit_status(task, PENDING)
            return
        attempt_status: str = FAILED
        retryable = False
        if run.reason == "cancel" or result.cancelled:
            status, error = CANCELLED, run.cancel_reason or "Cancelled"
            attempt_status = CANCELLED
        elif result.spawn_error:
            status, error = FAILED, result.spawn_error
        elif result.timed_out:
            status, error = FAILED, f"Timed out after {task['timeout_seconds']:g} seconds"
            attempt_status, retryable = ATTEMPT_TIMED_OUT, True
        elif result.exit_code == 0:
            status, error, attempt_status = COMPLETED, None, COMPLETED
        else:
            status, retryable = FAILED, True
            last = result.stderr_tail.strip().splitlines()[-1:] if result.stderr_tail else []
            error = f"Command exited with code {result.exit_code}" + (
                f": {last[0]}" if last else ""
            )
        failures = int(task.get("failures") or 0) + (1 if status == FAILED else 0)
        if (
            retryable
            and failures <= int(task.get("retries") or 0)
            and effective_attempts(task, run.attempt) < int(task["max_attempts"])
        ):
            delay = backoff_seconds(self.settings.retry_backoff_seconds, failures)
            await self.store.update_attempt(
                run.aid,
                {
                    "status": attempt_status,
                    "ended_at": now,
                    "exit_code": result.exit_code,
                    "error": error,
                },
            )
            await self.store.update_task(
                run.task_id,
                {
                    "status": PENDING,
                    "failures": failures,
                    "output": output,
                    "error": error,
                    "not_before": now + timedelta(seconds=delay),
                },
            )
            await self._release(run)
            await self._emit_status(task, PENDING)
            return
        attempt_fields = {
            "status": attempt_status,
            "ended_at": now,
            "exit_code": result.exit_code,
            "error": error,
        }
        extra: dict[str, Any] = {
            "failures": failures,
            "progress": 100.0 if status == COMPLETED else run.progress,
            "current_step": run.current_step,
        }
        if output is not None or task.get("output") is not None:
            extra["output"] = output  # a silent task that never had output writes none
        # The process has ended: free its group slot first, so that a task shown final
        # never still holds one (and the next task of the group can start sooner).
        await self._release(run)
        await self._finalize(task, status, error, attempt=(run.aid, attempt_fields), extra=extra)

    async def _release(self, run: Run) -> None:
        if run.slot:
            await self.store.release_slot(run.slot, run.task_id)

    # ----------------------------------------------------------------- finals
    async def _finalize(
        self,
        task: Document,
        status: str,
        error: str | None,
        *,
        attempt: tuple[str, Mapping[str, Any]] | None = None,
        extra: Mapping[str, Any] | None = None,
        won_attempt: tuple[str, Mapping[str, Any]] | None = None,
    ) -> bool:
        """Decide the task's final status; False when someone else decided first.
        ``attempt`` is our own attempt's end (written either way); ``won_attempt``
        is written only when this call decides (a taken-over attempt)."""
        task_id = str(task["_id"])
        now = utcnow()
        won = await self.store.claim_final(
            {
                "_id": task_id,
                "status": status,
                "error": error,
                "completed_at": now,
                "worker_id": self.worker_id,
            }
        )
        if not won:
            if attempt is not None:
                await self.store.update_attempt(attempt[0], dict(attempt[1]))
            final = await self.store.get_final(task_id)
            if final is not None:
                self._finals[task_id] = str(final["status"])
                await self._repair(task, final, extra)
            return False
        self._finals[task_id] = status
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
        self._wake.set()
        if self._loops:
            self._dequeue_pending.add(task_id)
            await self._emit_status(merged, status)
        else:
            await asyncio.gather(self._emit_status(merged, status), self.store.dequeue(task_id))
        await self._notify_final(merged)
        return True

    async def _notify_final(self, task: Document) -> None:
        for listener in self._listeners:
            try:
                await listener(task)
            except Exception:
                log.exception("final listener failed for task %s", task["_id"])

    async def _repair(
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
        task_id = str(task["_id"])
        self._finals[task_id] = str(final["status"])
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
                await self._emit_status(merged, str(final["status"]))
                await self._notify_final(merged)
        if not dequeue:
            return
        if self._loops:
            self._dequeue_pending.add(task_id)
        else:
            await self.store.dequeue(task_id)

    # ----------------------------------------------------------------- events
    @staticmethod
    def _status_event(task: Document, status: str) -> tuple[dict[str, Any], dict[str, Any]]:
        data = {"task_id": task["_id"], "status": wire_status(status)}
        metadata = {
            **data,
            "task_status": status,
            "name": task.get("name"),
            "batch_id": task.get("batch_id"),
            "operation_id": task.get("operation_id"),
            "kind": task.get("kind"),
            "error": task.get("error") if status != RUNNING else None,
            # Who may see it (/ws filters on it) without a read of the task per event.
            "owner": owner_of(task),
        }
        return data, metadata

    async def _emit_status(self, task: Document, status: str) -> None:
        await self._publish("TaskStatusChanged", *self._status_event(task, status))

    async def _emit_statuses(self, changes: Sequence[tuple[Document, str]]) -> None:
        """One stored-events insert for many changes when the sink can batch."""
        publish_many = getattr(self.sink, "publish_many", None)
        if publish_many is None or len(changes) < 2:
            await asyncio.gather(*(self._emit_status(t, st) for t, st in changes))
            return
        try:
            await publish_many(
                [("TaskStatusChanged", *self._status_event(t, st)) for t, st in changes]
            )
        except Exception:
            log.exception("could not publish %d TaskStatusChanged events", len(changes))

    async def _publish(
        self, event_type: str, data: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> None:
        try:
            await self.sink.publish(event_type, data, metadata)
        except Exception:
            log.exception("could not publish %s", event_type)

    async def _flush_events(self, run: Run) -> None:
        meta = {
            "task_id": run.task_id,
            "batch_id": run.task.get("batch_id"),
            "operation_id": run.task.get("operation_id"),
            "owner": owner_of(run.task),
        }
        if run.lines:
            lines, run.lines = run.lines[:_OUTPUT_EVENT_LINES], run.lines[_OUTPUT_EVENT_LINES:]
            await self._publish("TaskOutput", {"task_id": run.task_id, "lines": lines}, meta)
        if run.progress_dirty:
            run.progress_dirty = False
            await self._publish(
                "TaskProgress",
                {
                    "task_id": run.task_id,
                    "progress": run.progress,
                    "current_step": run.current_step,
                },
                meta,
            )

    # ------------------------------------------------------------ maintenance
    async def _maintenance(self) -> None:
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
                    await self._check_index()
                if now_mono >= self._next_sweep:
                    self._next_sweep = now_mono + _QUEUE_SWEEP_SECONDS
                    await self._sweep_queue()
                await asyncio.gather(*(self._flush_events(r) for r in list(self.runs.values())))
                if now_mono - last_cancel >= _CANCEL_POLL_SECONDS:
                    last_cancel = now_mono
                    full = now_mono >= next_full_cancel_poll
                    if full:
                        next_full_cancel_poll = now_mono + _CANCEL_FULL_POLL_SECONDS
                    await self._poll_cancels(fast=not full)
                if now_mono - last_doc >= _DOC_FLUSH_SECONDS:
                    last_doc = now_mono
                    await self._flush_docs()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("engine maintenance failed")

    async def _check_index(self) -> None:
        try:
            if await self.store.rebuild_index_if_needed(self.worker_id):
                self.wake()
        except Exception as exc:  # Redis away: tried again on the next check
            log.warning("task index check failed: %s", type(exc).__name__)

    async def _sweep_queue(self) -> None:
        """Re-create queue entries of unfinished tasks that have none (a creator that
        died between the two inserts). An entry made for a task that has just become
        final is removed again by the takeover pass."""
        if self._swept:
            unfinished = await self.store.unfinished_tasks()
        else:
            unfinished = await self.store.unfinished_tasks_scan()
            self._swept = True
        if not unfinished:
            return
        queued = await self.store.queued_ids()
        missing = [queue_entry(t) for t in unfinished if t["_id"] not in queued]
        if missing:
            log.info("re-queueing %d tasks without a queue entry", len(missing))
            await self.store.enqueue(missing)
            self.wake()

    async def _heartbeats(self) -> None:
        """Its own loop, so slow event or output writes never delay lease renewals."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            started = time.monotonic()
            # Only runs that this round renewed are checked: a run started during the
            # round holds the lease of its own start, checked after the next round.
            renewed = set(self.runs)
            try:
                await self._heartbeat()
                took = time.monotonic() - started
                if took > self.settings.lease_seconds / 3:
                    log.warning("slow lease renewal: %.2fs", took)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lease renewal failed: %s", type(exc).__name__)
            self._check_own_leases(renewed)

    async def _poll_cancels(self, *, fast: bool) -> None:
        wanted = await self.store.cancel_requests(
            (r.task_id for r in self.runs.values()), fast=fast
        )
        for run in list(self.runs.values()):
            if run.task_id in wanted and run.reason is None:
                run.halt("cancel", wanted[run.task_id])

    async def _flush_docs(self) -> None:
        for run in list(self.runs.values()):
            async with run.lock:  # one writer of the task document at a time
                if run.doc_dirty and not run.done:
                    run.doc_dirty = False
                    await self.store.update_task(
                        run.task_id,
                        {
                            "output": run.output.text() or None,
                            "progress": run.progress,
                            "current_step": run.current_step,
                        },
                    )

    async def _heartbeat(self) -> None:
        runs = [r for r in self.runs.values() if r.reason != "lost" and not r.done]
        if not runs:
            return
        now = utcnow()
        expires = now + timedelta(seconds=self.settings.lease_seconds)
        await asyncio.gather(*(self._renew(run, now, expires) for run in runs))
        # Someone inserted our next attempt: our lease was considered dead; stop at once.
        successors = await self.store.existing_attempts(
            [attempt_id(r.task_id, r.attempt + 1) for r in runs]
        )
        for run in runs:
            if attempt_id(run.task_id, run.attempt + 1) in successors:
                log.warning("attempt %s was taken over; stopping it", run.aid)
                run.halt("lost")

    async def _renew(self, run: Run, now: datetime, expires: datetime) -> None:
        # Under the run's lock: the attempt's end is written under it too, and a
        # concurrent renewal would overwrite it on FerretDB (read-then-overwrite).
        async with run.lock:
            if run.done:
                return
            await self.store.renew_leases([run.aid], expires, now)
            if run.slot:
                await self.store.renew_slots([run.slot], expires)
            run.lease_expires = expires

    def _check_own_leases(self, aids: Iterable[str]) -> None:
        """If renewals keep failing, stop before another replica takes over."""
        now = utcnow()
        for aid in aids:
            run = self.runs.get(aid)
            if run is not None and run.reason is None and run.lease_expires <= now:
                log.warning("lease of %s could not be renewed; stopping it", run.aid)
                run.halt("lost")
