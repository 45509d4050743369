"""The durable, multi-replica task engine (DESIGN §5).

A replica claims a ready task by inserting its attempt document
(``_id = <task_id>:<n>``); the unique ``_id`` decides the winner. The owner
heartbeats the attempt's lease; an expired lease is taken over by inserting attempt
``n+1`` (or the task fails after its attempt limit). The final status is decided by
a unique insert in ``task_finals``, so exactly one replica finalizes a task, emits its
final event and calls the final listeners. Cancellation is a request the owner acts on.

``Engine`` is the facade: the public API and the lifecycle. It builds the parts
(scheduler, attempts, execution, finals, events, leases, maintenance: see the package
docstring) around one shared ``EngineState`` and runs their loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Mapping, Sequence

from provisioning_common.timeutil import utcnow

from .attempts import Attempts
from .events import Events, EventSink, status_event
from .execution import Execution
from .finals import FinalListener, Finals
from .leases import Leases
from .maintenance import Maintenance
from .model import CANCELLED, FINAL_STATUSES, PENDING, Defaults, TaskSpec, task_document
from .process import clean_env
from .scheduler import Scheduler
from .settings import EngineSettings
from .state import EngineState, Run
from .store import TaskStore, queue_entry

__all__ = ["Engine", "EventSink", "FinalListener", "Run"]

log = logging.getLogger(__name__)


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
        child_env = clean_env(
            os.environ if environ is None else environ,
            settings.env_allowlist,
            settings.env_prefixes,
        )
        self._state = EngineState(store, settings, self.worker_id)
        self._events = Events(sink)
        self._decisions = Finals(self._state, self._events)
        execution = Execution(self._state, self._events, self._decisions, child_env)
        self._leases = Leases(self._state)
        self._scheduler = Scheduler(
            self._state,
            self._decisions,
            Attempts(self._state, self._events, self._decisions, execution),
        )
        self._maintenance = Maintenance(self._state, self._events, self._leases, execution)

    # The shared state, under the names it had when it all lived here (tests reach in).
    @property
    def runs(self) -> dict[str, Run]:
        """Attempt id -> the run of it on this replica."""
        return self._state.runs

    @property
    def _loops(self) -> list[asyncio.Task[None]]:
        return self._state.loops

    @_loops.setter
    def _loops(self, loops: list[asyncio.Task[None]]) -> None:
        self._state.loops = loops

    @property
    def _finals(self) -> dict[str, str]:
        return self._state.finals

    _status_event = staticmethod(status_event)

    async def _sweep_queue(self) -> None:
        await self._maintenance.sweep_queue()

    # ------------------------------------------------------------- public API
    def add_final_listener(self, listener: FinalListener) -> None:
        self._decisions.listeners.append(listener)

    def wake(self) -> None:
        self._state.wake.set()

    @property
    def swept(self) -> bool:
        """The start-up sweep (a full read of ``tasks``, done once by the maintenance
        loop soon after start) is behind us: from here on, steady state."""
        return self._maintenance.swept

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
            self._events.emit_statuses([(doc, PENDING) for doc in new]),
        )
        self._scheduler.start_now(new)
        self.wake()
        return [str(d["_id"]) for d in docs]

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
            decided = await self._decisions.finalize(task, CANCELLED, reason)
            return "cancelled" if decided else "final"
        if task["status"] in FINAL_STATUSES:
            return "final"
        return "requested"

    # -------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        await self.store.ensure_indexes()
        await self._maintenance.check_index()
        if not self.settings.enabled:
            return
        self._state.loops = [
            asyncio.create_task(self._scheduler.loop(), name="engine-scheduler"),
            asyncio.create_task(self._maintenance.loop(), name="engine-maintenance"),
            asyncio.create_task(self._leases.loop(), name="engine-heartbeats"),
        ]

    async def stop(self) -> None:
        """Stop claiming, let running tasks finish within the grace period, then
        hand the rest back (their attempt ends ``Released``, the task is Pending again)."""
        state = self._state
        state.stopping = True
        state.wake.set()
        if state.loops:
            # Let a claim in progress complete (cancelling it mid-way could leave a
            # Running task without a run); the loop exits at its next check.
            try:
                async with asyncio.timeout(15):
                    await asyncio.shield(state.loops[0])
            except TimeoutError:
                state.loops[0].cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state.loops[0]
            if state.start_tasks:
                await asyncio.wait(list(state.start_tasks), timeout=15)
        handles = [r.handle for r in self.runs.values() if r.handle is not None]
        if handles:
            await asyncio.wait(handles, timeout=self.settings.shutdown_grace_seconds)
        for run in list(self.runs.values()):
            run.halt("release")
        handles = [r.handle for r in self.runs.values() if r.handle is not None]
        if handles:
            await asyncio.wait(handles, timeout=self.settings.kill_grace_seconds + 10)
        for loop in state.loops[1:]:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        state.loops = []
        try:
            await self._scheduler.flush_dequeues()
        except Exception:  # the entries are leftovers now; other replicas remove them
            log.warning("could not remove finished tasks from the queue")
