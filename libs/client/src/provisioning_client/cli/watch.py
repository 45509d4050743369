"""``provctl watch``: live per-operation progress fed by ``/ws`` events.

The event stream is opened before the first read of the workflow so nothing that
happens in between is missed. Events update the bars directly when they carry
progress; otherwise they trigger a re-read of the workflow, throttled so that a
chatty batch stays well inside the API rate limit. A slow periodic re-read covers a
stream that is down while it reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ..client import ProvisioningClient
from ..errors import NotFoundError
from ..models import Batch, Event, Task, is_terminal

REFETCH_MIN_INTERVAL = 1.5
POLL_INTERVAL = 5.0


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value (task ids hide in operation ``results``)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@dataclass
class Target:
    kind: str  # "batch" or "task"
    id: str
    doc: Batch | Task
    related: set[str] = field(default_factory=set)

    @property
    def status(self) -> str:
        return self.doc.status

    @property
    def finished(self) -> bool:
        return is_terminal(self.doc.status)

    @property
    def succeeded(self) -> bool:
        return self.doc.status.lower() == "completed"

    def bars(self) -> list[tuple[str, float, str]]:
        """(label, percent, status) for each bar to draw."""
        if isinstance(self.doc, Batch):
            return [(op.id, float(op.progress or 0.0), op.status) for op in self.doc.operations]
        task = self.doc
        pct = 100.0 if task.status.lower() == "completed" else float(task.progress or 0.0)
        return [(task.name or task.id, pct, task.status)]

    def mentions(self, event: Event) -> bool:
        values = set(_strings(event.data)) | set(_strings(event.metadata))
        return self.id in values or bool(self.related & values)

    def is_subject(self, event: Event) -> bool:
        """The event is about the watched batch or task itself (not one of its tasks)."""
        key = "batch_id" if self.kind == "batch" else "task_id"
        return event.get(key) == self.id and (
            self.kind == "task" or event.event_type.startswith("Batch")
        )

    def apply(self, event: Event) -> bool:
        """Update progress from the event itself; False when a re-read is needed."""
        data = {**event.metadata, **event.data}
        if isinstance(self.doc, Task) and "progress" in data and data.get("task_id") == self.id:
            with contextlib.suppress(TypeError, ValueError):
                self.doc.progress = float(data["progress"])
            if data.get("current_step"):
                self.doc.current_step = str(data["current_step"])
            return True
        operations = event.data.get("operations")
        if isinstance(self.doc, Batch) and isinstance(operations, list):
            # BatchProgress carries every operation's status and progress.
            by_id = {op.id: op for op in self.doc.operations}
            for item in operations:
                op = by_id.get(str(item.get("id"))) if isinstance(item, dict) else None
                if op is None:
                    continue
                with contextlib.suppress(TypeError, ValueError):
                    op.progress = float(item.get("progress", op.progress))
                op.status = str(item.get("status") or op.status)
            return True
        return False


async def load_target(client: ProvisioningClient, target_id: str) -> Target:
    try:
        batch = await client.batches.get(target_id)
    except NotFoundError:
        return Target("task", target_id, await client.tasks.get(target_id))
    target = Target("batch", target_id, batch)
    target.related = {s for op in batch.operations for s in _strings(op.results)}
    return target


async def refetch(client: ProvisioningClient, target: Target) -> None:
    if target.kind == "batch":
        batch = await client.batches.get(target.id)
        target.doc = batch
        target.related |= {s for op in batch.operations for s in _strings(op.results)}
    else:
        target.doc = await client.tasks.get(target.id)


class Display:
    """The rich progress bars (nothing is drawn in JSON mode)."""

    def __init__(self, console: Console | None, title: str) -> None:
        self.progress: Progress | None = None
        self.bars: dict[str, TaskID] = {}
        if console is not None:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=console,
                refresh_per_second=8,
            )
            self.progress.console.print(title, highlight=False)

    def __enter__(self) -> Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.refresh()
            self.progress.stop()

    def update(self, target: Target) -> None:
        if self.progress is None:
            return
        for label, pct, status in target.bars():
            if label not in self.bars:
                self.bars[label] = self.progress.add_task(label, total=100.0, status=status)
            self.progress.update(self.bars[label], completed=min(pct, 100.0), status=status)


class EventPump:
    """Reads ``/ws`` in the background into a queue, subscribed before it returns."""

    def __init__(self, client: ProvisioningClient) -> None:
        self.stream = client.events()
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _pump(self) -> None:
        async for event in self.stream:
            self.queue.put_nowait(event)

    async def __aenter__(self) -> EventPump:
        self.task = asyncio.create_task(self._pump())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await self.stream.connected.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        await self.stream.aclose()

    async def get(self, wait: float) -> Event | None:
        """The next event, or None after ``wait`` seconds; re-raises a fatal stream error."""
        if self.task is not None and self.task.done() and self.queue.empty():
            self.task.result()  # an authentication failure surfaces here
            await asyncio.sleep(wait)  # stream ended: the caller's polling takes over
            return None
        try:
            async with asyncio.timeout(wait):
                return await self.queue.get()
        except TimeoutError:
            return None


async def watch(
    client: ProvisioningClient,
    target_id: str,
    *,
    console: Console | None,
    give_up_after: float | None = None,
) -> Target:
    """Follow a batch or task until it finishes; returns its final state."""
    async with EventPump(client) as events:
        # Subscribed first, then read: what happens in between still arrives as events.
        target = await load_target(client, target_id)
        deadline = None if give_up_after is None else time.monotonic() + give_up_after
        title = f"Watching {target.kind} {target_id}"
        with Display(console, title) as display:
            display.update(target)
            # dirty=True: one early re-read covers events emitted while the server was
            # still registering our subscription right after the handshake.
            last_fetch, dirty = time.monotonic(), True
            while not target.finished:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{target.kind} {target_id} still {target.status}")
                event = await events.get(REFETCH_MIN_INTERVAL if dirty else POLL_INTERVAL)
                urgent = False
                if event is not None and target.mentions(event):
                    changed = "status" in event.event_type.lower()
                    # The target's own status change is read at once; changes of its
                    # many tasks are coalesced to keep inside the API rate limit.
                    urgent = changed and target.is_subject(event)
                    dirty = not target.apply(event) or changed or dirty
                    display.update(target)
                since = time.monotonic() - last_fetch
                if urgent or (dirty and since >= REFETCH_MIN_INTERVAL) or since >= POLL_INTERVAL:
                    await refetch(client, target)
                    last_fetch, dirty = time.monotonic(), False
                    display.update(target)
            await refetch(client, target)
            display.update(target)
        return target
