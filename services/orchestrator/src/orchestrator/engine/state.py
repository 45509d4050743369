"""What the engine's parts share: the attempts running on this replica (``Run``) and
the bookkeeping of the scheduler, in one object the facade builds and hands to each
part. Everything runs on one event loop: no locks beyond each run's own."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from provisioning_common.mongo import Document

from .model import attempt_id
from .process import TailBuffer
from .settings import EngineSettings
from .store import TaskStore


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


@dataclass(eq=False)
class EngineState:
    """The mutable state of one engine, shared by the facade and its parts."""

    store: TaskStore
    settings: EngineSettings
    worker_id: str
    runs: dict[str, Run] = field(default_factory=dict)  # attempt id -> run
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False
    # The background loops (scheduler, maintenance, heartbeats) while started: with
    # none, a final decision removes its queue entry at once instead of by the tick.
    loops: list[asyncio.Task[None]] = field(default_factory=list)
    # Final statuses never change once decided: cache them for dependency checks.
    finals: dict[str, str] = field(default_factory=dict)
    # Queue entries of tasks this replica finalized, deleted in one go per tick.
    dequeue_pending: set[str] = field(default_factory=set)
    # Starts in flight (claims and the Running write), in the background so that a
    # slow write never holds up the next tick: task id -> its concurrency key.
    starting: dict[str, str | None] = field(default_factory=dict)
    start_tasks: set[asyncio.Task[None]] = field(default_factory=set)
    full_keys: set[str] = field(default_factory=set)  # concurrency groups found full this tick
    caught_up: bool = False  # see Scheduler.tick

    def free(self) -> int:
        # A slot is a process: a run whose process has exited frees it while its end
        # is still being recorded.
        running = sum(1 for run in self.runs.values() if not run.exited)
        return self.settings.concurrency - running - len(self.starting)
