"""The events the engine publishes: task status changes (one by one, or many in one
stored insert) and a run's output lines and progress. A failed publish is logged,
never raised: events follow the stored state, they never decide it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from provisioning_common.mongo import Document

from ..event_types import EventType
from .index import owner_of
from .model import RUNNING, wire_status
from .state import Run

log = logging.getLogger(__name__)

_OUTPUT_EVENT_LINES = 200


class EventSink(Protocol):
    async def publish(
        self, event_type: str, data: Mapping[str, Any], metadata: Mapping[str, Any] | None = None
    ) -> Any: ...


def status_event(task: Document, status: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The data and metadata of a ``TaskStatusChanged`` event."""
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


class Events:
    def __init__(self, sink: EventSink) -> None:
        self.sink = sink

    async def emit_status(self, task: Document, status: str) -> None:
        await self.publish(EventType.TASK_STATUS_CHANGED, *status_event(task, status))

    async def emit_statuses(self, changes: Sequence[tuple[Document, str]]) -> None:
        """One stored-events insert for many changes when the sink can batch."""
        publish_many = getattr(self.sink, "publish_many", None)
        if publish_many is None or len(changes) < 2:
            await asyncio.gather(*(self.emit_status(t, st) for t, st in changes))
            return
        try:
            await publish_many(
                [(EventType.TASK_STATUS_CHANGED, *status_event(t, st)) for t, st in changes]
            )
        except Exception:
            log.exception(
                "could not publish %d %s events", len(changes), EventType.TASK_STATUS_CHANGED
            )

    async def publish(
        self, event_type: EventType, data: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> None:
        try:
            await self.sink.publish(event_type, data, metadata)
        except Exception:
            log.exception("could not publish %s", event_type)

    async def flush_run(self, run: Run) -> None:
        """The output lines and progress a run gathered since the last flush."""
        meta = {
            "task_id": run.task_id,
            "batch_id": run.task.get("batch_id"),
            "operation_id": run.task.get("operation_id"),
            "owner": owner_of(run.task),
        }
        if run.lines:
            lines, run.lines = run.lines[:_OUTPUT_EVENT_LINES], run.lines[_OUTPUT_EVENT_LINES:]
            await self.publish(
                EventType.TASK_OUTPUT, {"task_id": run.task_id, "lines": lines}, meta
            )
        if run.progress_dirty:
            run.progress_dirty = False
            await self.publish(
                EventType.TASK_PROGRESS,
                {
                    "task_id": run.task_id,
                    "progress": run.progress,
                    "current_step": run.current_step,
                },
                meta,
            )
