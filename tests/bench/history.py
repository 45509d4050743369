"""Finished-task history for the storage bench (issue 11), written in bulk.

:func:`seed_history` is the ONE place that knows what a finished ``POST
/workflows/servers/create`` leaves behind in storage; adapt it (and only it) when the
storage layout changes. Per task it writes what the orchestrator itself writes:

* ``tasks``: the orchestrator's own :func:`~orchestrator.engine.model.task_document`,
  made final, inserted through :meth:`TaskStore.insert_tasks` (so a task index the
  store keeps, e.g. in Redis, gets its entries the way the service writes them);
  with a ``task_outputs`` collection (``TaskStore.outputs``) the output goes there and
  the task document keeps ``output_summary(output)``;
* ``task_attempts`` (one attempt), ``task_finals``, ``task_cancels`` (cancelled ones);
* ``events``: ``TaskStatusChanged`` pending/running/final as the engine builds them
  (``Engine._status_event``) plus a ``TaskOutput`` and a ``TaskProgress`` event, through
  :meth:`EventRepository.insert_many`;
* ``operations_ledger``: the rollback ledger entry of a completed task
  (``rollback.ledger.ledger_entry``);
* ``audit_history`` (``audit_outbox`` where the outbox keeps no history collection) and
  ``audit_attempts``: the delivered audit record of the submission (and of the
  cancel), shaped as :class:`AuditService` and :class:`Outbox` write them.

Mix: every 10th task Failed (exit 1, one attempt), every 20th (offset 5) Cancelled while
Pending (no attempt), the rest Completed. ``created_at`` lies in the past, 2 s apart,
so tasks submitted afterwards are the newest."""

from __future__ import annotations

import inspect
import secrets
import time
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from orchestrator.engine import store as store_module
from orchestrator.engine.engine import Engine
from orchestrator.engine.model import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    Defaults,
    attempt_id,
    task_document,
)
from orchestrator.engine.store import TaskStore
from orchestrator.events.repository import EventRepository
from orchestrator.rollback.ledger import ledger_entry
from orchestrator.rollback.repository import RollbackRepository
from orchestrator.workflows.model import servers_spec
from provisioning_common.envelope import format_timestamp
from provisioning_common.events import Event
from provisioning_common.mongo import Document
from provisioning_common.outbox import SUCCEEDED, AttemptResult, Outbox, OutboxItem
from provisioning_common.timeutil import utcnow

CHUNK = 500
BENCH_USER = "00000000-0000-4000-8000-00000000b001"
WORKER = "bench-history:0:000000"


def _task_store(db: AsyncDatabase[Document], redis: Redis) -> TaskStore:
    """``TaskStore(db, redis)`` where the store keeps a Redis index, else ``TaskStore(db)``."""
    params = [p for p in inspect.signature(TaskStore).parameters if p != "self"]
    factory = cast(Any, TaskStore)
    return cast(TaskStore, factory(db, redis) if len(params) >= 2 else factory(db))


def _event_wire(kind: str, data: dict[str, Any], meta: dict[str, Any], at: datetime) -> Any:
    # The publisher's id format (``new_event_id``), dated when the event happened.
    event_id = f"{int(at.timestamp() * 1e9):020d}-{secrets.token_hex(4)}"
    return Event(kind, data, meta, timestamp=at, id=event_id).to_wire()


def _status_wire(task: Document, status: str, at: datetime) -> Any:
    data, meta = Engine._status_event(task, status)
    return _event_wire("TaskStatusChanged", data, meta, at)


def _audit(action: str, resource: str, task_id: str, at: datetime) -> tuple[Document, Document]:
    """The audit record of one action, delivered at its first attempt."""
    record_id = str(uuid.uuid4())
    payload = {
        "id": record_id,
        "timestamp": format_timestamp(at),
        "user_id": BENCH_USER,
        "action": action,
        "resource": resource,
        "result": "success",
        "details": {"task_id": task_id, "request_id": uuid.uuid4().hex},
    }
    done = at + timedelta(milliseconds=20)
    item = {
        "action": action,
        "_id": record_id,
        "kind": "audit",
        "payload": payload,
        "status": SUCCEEDED,
        "attempts": 1,
        "seq": 1,
        "max_attempts": 10000,
        "next_attempt_at": done,
        "created_at": at,
        "updated_at": done,
        "last_error": None,
        "last_status_code": 201,
        "delivered_at": done,
        "finished_at": done,
    }
    attempt = {
        "_id": f"{record_id}:0",
        "item_id": record_id,
        "attempt": 1,
        "worker_id": WORKER,
        "status": SUCCEEDED,
        "started_at": at,
        "lease_until": at + timedelta(seconds=45),
        "duration_ms": 15.0,
        "ended_at": done,
        "error": None,
        "info": {},
        "status_code": 201,
    }
    return item, attempt


def _output(infra: str, lines: int, failed: bool) -> str:
    body = [f"[provisioning] servers create {infra}"]
    body += [
        f"step {i} of {lines}: creating resources for {infra} (zone eu-1, plan small)"
        for i in range(1, max(1, lines - 1))
    ]
    body.append(
        f"error: servers create failed for {infra}"
        if failed
        else f"Successfully created servers for {infra}"
    )
    return "\n".join(body) + "\n"


async def _no_delivery(item: OutboxItem, attempt: int) -> AttemptResult:
    raise AssertionError("the history outbox is never run")


def _finished_task(
    i: int, tag: str, base: datetime, defaults: Defaults, output_lines: int
) -> dict[str, list[Any]]:
    """Everything stored for history task ``i``, by collection (``task_outputs`` holds
    the whole output; the caller decides whether the layout has that collection)."""
    infra = f"hist-{tag}-{i}"
    created = base + timedelta(seconds=2 * i)
    doc = task_document(servers_spec({"infra": infra, "settings": "c.k"}), defaults, created)
    task_id = str(doc["_id"])
    status = FAILED if i % 10 == 0 else CANCELLED if i % 20 == 5 else COMPLETED
    ran = status != CANCELLED
    started = created + timedelta(milliseconds=40)
    ended = started + timedelta(milliseconds=600) if ran else created + timedelta(seconds=1)
    output = _output(infra, output_lines, status == FAILED) if ran else None
    error = {
        FAILED: f"Command exited with code 1: error: servers create failed for {infra}",
        CANCELLED: "Cancelled by user",
    }.get(status)
    doc.update(
        status=status,
        started_at=started if ran else None,
        completed_at=ended,
        error=error,
        progress=100.0 if status == COMPLETED else (50.0 if ran else 0.0),
        current_step="Done" if status == COMPLETED else None,
        attempts=1 if ran else 0,
        failures=1 if status == FAILED else 0,
        output=output,
    )
    out: dict[str, list[Any]] = {
        "tasks": [doc],
        "task_outputs": [{"_id": task_id, "output": output}] if output is not None else [],
        "task_finals": [
            {
                "_id": task_id,
                "status": status,
                "error": error,
                "completed_at": ended,
                "worker_id": WORKER,
            }
        ],
        "task_attempts": [],
        "task_cancels": [],
        "operations_ledger": [ledger_entry(doc, defaults.cli)] if status == COMPLETED else [],
        "audit_records": [],
        "audit_attempts": [],
        "events": [_status_wire(doc, PENDING, created)],
    }
    audits = [_audit("server.create", f"servers/{infra}", task_id, created)]
    if ran:
        out["task_attempts"].append(
            {
                "_id": attempt_id(task_id, 1),
                "task_id": task_id,
                "attempt": 1,
                "worker_id": WORKER,
                "status": status,
                "started_at": started,
                "ended_at": ended,
                "heartbeat_at": started,
                "lease_expires_at": started + timedelta(seconds=15),
                "exit_code": 1 if status == FAILED else 0,
                "error": error,
            }
        )
        meta = {"task_id": task_id, "batch_id": None, "operation_id": None}
        lines = (output or "").splitlines()[:200]
        progress = {"task_id": task_id, "progress": 50.0, "current_step": "Step 2/4"}
        out["events"] += [
            _status_wire(doc, RUNNING, started),
            _event_wire("TaskOutput", {"task_id": task_id, "lines": lines}, meta, ended),
            _event_wire("TaskProgress", progress, meta, ended),
        ]
    else:
        out["task_cancels"].append({"_id": task_id, "reason": error, "requested_at": ended})
        audits.append(_audit("task.cancel", f"tasks/{task_id}", task_id, ended))
    out["events"].append(_status_wire(doc, status, ended + timedelta(milliseconds=1)))
    for item, attempt in audits:
        out["audit_records"].append(item)
        out["audit_attempts"].append(attempt)
    return out


async def seed_history(
    db: AsyncDatabase[Document],
    redis: Redis,
    n: int,
    *,
    cli: str = "/bin/true",
    output_lines: int = 30,
) -> dict[str, int]:
    """Add ``n`` finished tasks with their companion documents; returns the documents
    written per collection name (plus ``"seconds"``). ``redis`` is the orchestrator's Redis
    (same URL, same database number) for whatever the storage keeps there."""
    started = time.perf_counter()
    store = _task_store(db, redis)
    audit = Outbox(db, "audit", _no_delivery)
    outputs = getattr(store, "outputs", None)  # output in its own collection
    summary = getattr(store_module, "output_summary", None)
    collections = {
        "task_outputs": outputs,
        "task_attempts": store.attempts_col,
        "task_finals": store.finals,
        "task_cancels": store.cancels,
        "operations_ledger": RollbackRepository(db).ledger,
        # Finished items: in ``audit_history`` where the outbox keeps one, else in place.
        "audit_records": getattr(audit, "history", audit.items),
        "audit_attempts": audit.attempts,
    }
    events = EventRepository(db)
    defaults = Defaults(cli, 3600.0, 3)
    tag = secrets.token_hex(3)
    base = utcnow() - timedelta(seconds=60 + 2 * n)
    counts: dict[str, int] = {}
    for first in range(0, n, CHUNK):
        chunk: dict[str, list[Any]] = {}
        for i in range(first, min(n, first + CHUNK)):
            for name, docs in _finished_task(i, tag, base, defaults, output_lines).items():
                chunk.setdefault(name, []).extend(docs)
        if outputs is not None and callable(summary):
            for doc in chunk["tasks"]:
                doc["output"] = summary(doc["output"])
        written = {"tasks": len(await store.insert_tasks(chunk["tasks"]))}
        for name, collection in collections.items():
            if collection is not None and chunk.get(name):
                await collection.insert_many(chunk[name], ordered=False)
                written[collection.name] = len(chunk[name])
        await events.insert_many(chunk["events"])
        written["events"] = len(chunk["events"])
        for name, k in written.items():
            counts[name] = counts.get(name, 0) + k
    counts["seconds"] = round(time.perf_counter() - started)
    return counts
