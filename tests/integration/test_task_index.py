"""The task index in Redis (listing, filtering and counting without reading the
history) against real Redis and the MongoDB-compatible server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from orchestrator.engine import TaskSpec, TaskStore
from orchestrator.engine.model import Defaults, task_document
from provisioning_common.timeutil import utcnow

DEFAULTS = Defaults("/bin/true", 60.0, 3)


def _docs(
    n: int, *, batch_id: str | None = None, age: timedelta = timedelta(0)
) -> list[dict[str, Any]]:
    now = utcnow() - age
    docs = []
    for i in range(n):
        spec = TaskSpec(name=f"t{i}", subcommand=("servers", "create"), args=("--infra", f"i{i}"))
        doc = task_document(spec, DEFAULTS, now + timedelta(seconds=i))
        doc["batch_id"] = batch_id
        docs.append(doc)
    return docs


async def test_list_count_and_filters_follow_status_writes(
    mongo_db: AsyncDatabase[dict[str, Any]], redis_client: Redis
) -> None:
    store = TaskStore(mongo_db, redis_client)
    await store.ensure_indexes()
    docs = _docs(12)
    await store.insert_tasks(docs)
    ids = [d["_id"] for d in docs]
    for task_id in ids[:3]:
        await store.update_task(task_id, {"status": "Failed"})

    assert await store.count() == 12
    assert await store.count(status="Pending") == 9
    assert await store.count(status="Failed") == 3
    page = await store.list_tasks(limit=5, offset=2)
    assert [d["_id"] for d in page] == list(reversed(ids))[2:7]  # newest first
    failed = await store.list_tasks(status="Failed", limit=50)
    assert [d["_id"] for d in failed] == list(reversed(ids[:3]))
    assert await store.status_counts(standalone=True) == {
        "Pending": 9,
        "Running": 0,
        "Completed": 0,
        "Failed": 3,
        "Cancelled": 0,
    }


async def test_index_lost_in_redis_is_rebuilt_from_mongodb(
    mongo_db: AsyncDatabase[dict[str, Any]], redis_client: Redis
) -> None:
    store = TaskStore(mongo_db, redis_client)
    docs = _docs(5) + _docs(3, batch_id="b-1")
    await store.insert_tasks(docs)
    await store.update_task(docs[0]["_id"], {"status": "Completed"})
    keys = [k async for k in redis_client.scan_iter(match=f"{mongo_db.name}:tasks:*")]
    await redis_client.delete(*keys)
    assert await store.count() == 0

    assert await store.rebuild_index_if_needed("test-worker")
    assert not await store.rebuild_index_if_needed("test-worker")  # built: nothing to do
    assert await store.count() == 8
    assert await store.count(status="Completed") == 1
    assert [d["_id"] for d in await store.find_by_batch("b-1")] == [d["_id"] for d in docs[5:]]
    assert (await store.status_counts(standalone=True))["Pending"] == 4


async def test_entry_that_disagrees_with_its_document_is_repaired_on_read(
    mongo_db: AsyncDatabase[dict[str, Any]], redis_client: Redis
) -> None:
    store = TaskStore(mongo_db, redis_client)
    docs = _docs(3, age=timedelta(hours=1))
    young = _docs(1)
    await store.insert_tasks(docs + young)
    # An entry whose document is not there yet (a creation in flight) is kept.
    await store.tasks.delete_one({"_id": young[0]["_id"]})
    # A status written to MongoDB while Redis missed it, and a task gone from MongoDB.
    await store.tasks.update_one({"_id": docs[0]["_id"]}, {"$set": {"status": "Cancelled"}})
    await store.tasks.delete_one({"_id": docs[1]["_id"]})

    pending = await store.list_tasks(status="Pending")
    assert [d["_id"] for d in pending] == [docs[2]["_id"]]
    assert await store.count(status="Cancelled") == 1
    assert await store.count() == 3  # the old orphan is gone, the young one kept
