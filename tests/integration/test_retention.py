"""Retention of finished history against real Redis and the MongoDB-compatible server:
what a pass removes and keeps, the task index after it, one runner per pass, the
metric, and stored events / outbox history older than the window."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from orchestrator.batches.repository import BatchRepository
from orchestrator.engine import TaskSpec, TaskStore
from orchestrator.engine.model import Defaults, task_document
from orchestrator.engine.store import queue_entry
from orchestrator.events.publisher import new_event_id
from orchestrator.events.repository import EventRepository
from orchestrator.retention import RetentionRepository, RetentionSettings, RetentionSweeper
from orchestrator.retention.model import event_id_floor
from provisioning_common.timeutil import utcnow

DEFAULTS = Defaults("/bin/true", 60.0, 3)
Db = AsyncDatabase[dict[str, Any]]

NOW = utcnow()
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=1)
COMPANIONS = ("task_finals", "task_cancels", "task_outputs", "task_queue")


def _task(name: str, created: datetime, *, batch_id: str | None = None) -> dict[str, Any]:
    spec = TaskSpec(name=name, subcommand=("servers", "create"), args=("--infra", name))
    doc = task_document(spec, DEFAULTS, created)
    doc["batch_id"] = batch_id
    return doc


async def _finish(
    store: TaskStore, doc: dict[str, Any], status: str, completed: datetime, attempts: int = 1
) -> None:
    """What the engine leaves behind for a finished task: attempt documents (plus an
    unrecorded claim of the next one), the final record, a cancel request, the
    output, a leftover queue entry; written through the store."""
    tid = doc["_id"]
    for n in range(1, attempts + 2):
        await store.claim_attempt({"_id": f"{tid}:{n}", "task_id": tid, "attempt": n})
    await store.claim_final({"_id": tid, "status": status, "completed_at": completed})
    await store.request_cancel(tid, "Cancelled by user", completed)
    await store.enqueue([queue_entry(doc)])
    await store.update_task(
        tid,
        {
            "status": status,
            "started_at": completed - timedelta(minutes=1),
            "completed_at": completed,
            "attempts": attempts,
            "output": f"output of {doc['name']}",
        },
    )


async def _exists(db: Db, collection: str, _id: str) -> bool:
    return await db[collection].find_one({"_id": _id}) is not None


def _metric(kind: str) -> float:
    value = REGISTRY.get_sample_value("orchestrator_retention_removed_total", {"kind": kind})
    return value or 0.0


@dataclass
class History:
    removed: list[dict[str, Any]]  # old and final: go
    kept: dict[str, dict[str, Any]]  # stay, by why


async def _history(store: TaskStore, db: Db) -> History:
    """Tasks in creation order such that the oldest ones cannot go: a pass must look
    past them."""
    batches = BatchRepository(db)
    await batches.insert({"_id": "b-done", "status": "Completed", "created_at": OLD})
    await batches.insert({"_id": "b-running", "status": "Running", "created_at": OLD})
    await batches.insert(
        {"_id": "b-rollback", "status": "Failed", "rollback_enabled": True, "rollback": None}
    )
    minute = timedelta(minutes=1)
    kept = {
        "pending": _task("pending", OLD),
        "running": _task("running", OLD + minute),
        "finished recently": _task("late", OLD + 2 * minute),
        "batch running": _task("in-running-batch", OLD + 3 * minute, batch_id="b-running"),
        "rollback due": _task("in-failed-batch", OLD + 4 * minute, batch_id="b-rollback"),
        "recent": _task("recent", RECENT),
    }
    removed = [
        _task("done", OLD + 5 * minute),
        _task("failed", OLD + 6 * minute, batch_id="b-done"),
        _task("cancelled", OLD + 7 * minute),
    ]
    await store.insert_tasks([*kept.values(), *removed])
    await store.enqueue([queue_entry(kept["pending"])])
    await store.update_task(kept["running"]["_id"], {"status": "Running", "attempts": 1})
    await _finish(store, kept["finished recently"], "Completed", RECENT)
    await _finish(store, kept["batch running"], "Completed", OLD + 10 * minute)
    await _finish(store, kept["rollback due"], "Completed", OLD + 10 * minute)
    await _finish(store, kept["recent"], "Completed", RECENT)
    await _finish(store, removed[0], "Completed", OLD + 10 * minute, attempts=2)
    await _finish(store, removed[1], "Failed", OLD + 10 * minute)
    await _finish(store, removed[2], "Cancelled", OLD + 10 * minute, attempts=0)
    return History(removed=removed, kept=kept)


def _sweeper(
    store: TaskStore, db: Db, *, worker_id: str = "w1", batch: int = 2, sweep_seconds: int = 3600
) -> RetentionSweeper:
    settings = RetentionSettings(days=30, batch=batch, sweep_seconds=sweep_seconds)
    repo = RetentionRepository(store, db, BatchRepository(db))
    return RetentionSweeper(repo, settings, worker_id=worker_id)


async def test_pass_removes_old_finished_tasks_with_their_documents(
    mongo_db: Db, redis_client: Redis
) -> None:
    store = TaskStore(mongo_db, redis_client)
    await store.ensure_indexes()
    history = await _history(store, mongo_db)
    # An index entry whose task is gone from MongoDB already.
    ghost = _task("ghost", OLD - timedelta(minutes=1))
    await store.insert_tasks([ghost])
    await store.tasks.delete_one({"_id": ghost["_id"]})
    assert await store.count() == 10
    assert len(await store.find_by_batch("b-done")) == 1
    before = {kind: _metric(kind) for kind in ("tasks", "attempts")}

    # Pages of 2 while the oldest 5 must stay: kept tasks never end the pass.
    result = await _sweeper(store, mongo_db, batch=2).sweep_once(NOW)

    assert result is not None
    assert (result.tasks, result.attempts, result.forgotten) == (3, 2 + 3 + 1, 1)
    assert result.kept == 5
    assert result.errors == []
    for doc in history.removed:
        tid = doc["_id"]
        assert not await _exists(mongo_db, "tasks", tid)
        for collection in COMPANIONS:
            assert not await _exists(mongo_db, collection, tid), collection
        for n in range(1, 4):
            assert not await _exists(mongo_db, "task_attempts", f"{tid}:{n}")
    for why, doc in history.kept.items():
        assert await store.get(doc["_id"]) is not None, why
    assert await _exists(mongo_db, "task_queue", history.kept["pending"]["_id"])
    recent = history.kept["finished recently"]["_id"]
    assert await store.get_output(recent) == "output of late"
    assert await store.get_final(recent) is not None
    assert await _exists(mongo_db, "task_attempts", f"{recent}:1")

    # The index follows: counts, status sets and the batch's set.
    assert await store.count() == 6
    assert await store.count(status="Completed") == 4
    assert await store.count(status="Failed") == 0
    assert await store.count(status="Cancelled") == 0
    assert await store.count(status="Pending") == 1
    assert await store.find_by_batch("b-done") == []
    assert len(await store.find_by_batch("b-running")) == 1

    assert _metric("tasks") == before["tasks"] + 3
    assert _metric("attempts") == before["attempts"] + 6

    run = await mongo_db["retention_runs"].find_one({"_id": result.run_id})
    assert run is not None
    assert run["worker_id"] == "w1"
    assert run["finished_at"] is not None
    assert run["removed"]["tasks"] == 3
    assert run["removed"]["attempts"] == 6
    assert run["errors"] == []


async def test_one_of_two_concurrent_sweepers_runs_a_pass(
    mongo_db: Db, redis_client: Redis
) -> None:
    first, second = TaskStore(mongo_db, redis_client), TaskStore(mongo_db, redis_client)
    history = await _history(first, mongo_db)

    results = await asyncio.gather(
        _sweeper(first, mongo_db, worker_id="w1").sweep_once(NOW),
        _sweeper(second, mongo_db, worker_id="w2").sweep_once(NOW),
    )

    ran = [r for r in results if r is not None]
    assert len(ran) == 1
    assert ran[0].tasks == len(history.removed)
    run = await mongo_db["retention_runs"].find_one({"_id": ran[0].run_id})
    assert run is not None
    assert run["worker_id"] == ("w1" if results[0] is not None else "w2")
    # The same slot later (a restarted replica): already run.
    assert await _sweeper(first, mongo_db).sweep_once(NOW + timedelta(seconds=1)) is None
    # The next slot is a new pass, with nothing left to remove.
    later = await _sweeper(second, mongo_db).sweep_once(NOW + timedelta(hours=1))
    assert later is not None
    assert later.tasks == 0


async def test_events_and_outbox_history_older_than_the_window_are_removed(
    mongo_db: Db, redis_client: Redis
) -> None:
    events = EventRepository(mongo_db)
    old_id = f"{event_id_floor(OLD)}-0a0b0c0d"
    new_id = new_event_id()
    for event_id in (old_id, new_id):
        await events.insert(
            {"id": event_id, "event_type": "TaskStatusChanged", "timestamp": "t", "data": {}}
        )
    audit = mongo_db["audit_history"]
    await audit.insert_many(
        [{"_id": "old", "created_at": OLD}, {"_id": "new", "created_at": RECENT}]
    )
    before = {kind: _metric(kind) for kind in ("events", "outbox")}

    result = await _sweeper(TaskStore(mongo_db, redis_client), mongo_db).sweep_once(NOW)

    assert result is not None
    assert (result.events, result.outbox) == (1, 1)
    assert result.errors == []
    assert not await events.exists(old_id)
    assert await events.exists(new_id)
    assert [d["_id"] async for d in audit.find({})] == ["new"]
    # A history collection that does not exist yet is neither an error nor created.
    assert "webhook_history" not in await mongo_db.list_collection_names()
    assert _metric("events") == before["events"] + 1
    assert _metric("outbox") == before["outbox"] + 1


async def test_run_records_older_than_the_window_are_pruned(
    mongo_db: Db, redis_client: Redis
) -> None:
    store = TaskStore(mongo_db, redis_client)
    assert await _sweeper(store, mongo_db).sweep_once(OLD) is not None
    between = await _sweeper(store, mongo_db).sweep_once(NOW - timedelta(days=20))
    assert between is not None
    assert between.runs == 0  # the run at OLD is within that pass's window

    result = await _sweeper(store, mongo_db).sweep_once(NOW)

    assert result is not None
    assert result.runs == 1
    assert await mongo_db["retention_runs"].count_documents({}) == 2


async def test_background_loop_sweeps_at_the_slot_boundary(
    mongo_db: Db, redis_client: Redis
) -> None:
    store = TaskStore(mongo_db, redis_client)
    old = _task("old", utcnow() - timedelta(days=40))
    await store.insert_tasks([old])
    await _finish(store, old, "Completed", utcnow() - timedelta(days=31))
    task = asyncio.create_task(_sweeper(store, mongo_db, sweep_seconds=1).run())
    try:
        for _ in range(50):
            if await store.get(old["_id"]) is None:
                break
            await asyncio.sleep(0.1)
        assert await store.get(old["_id"]) is None
        assert await mongo_db["retention_runs"].count_documents({}) >= 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
