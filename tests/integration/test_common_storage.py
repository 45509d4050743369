"""The real MongoDB-compatible server and Redis are used: documents round-trip,
indexes are idempotent, the unique-insert claim has exactly one winner, pub/sub
delivers, and the rate limiter counts."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from provisioning_common.events import EventBus
from provisioning_common.mongo import IndexSpec, claim, ensure_indexes, open_client
from provisioning_common.ratelimit import RateLimiter
from provisioning_common.timeutil import utcnow

Db = AsyncDatabase[dict[str, Any]]


async def test_document_round_trip_and_indexes(mongo_db: Db) -> None:
    coll = mongo_db["things"]
    specs = [IndexSpec([("name", 1)], "name_unique", unique=True), IndexSpec([("at", -1)], "at")]
    await ensure_indexes(coll, specs)
    await ensure_indexes(coll, specs)  # idempotent
    now = utcnow()
    await coll.insert_one({"_id": "a", "name": "web-01", "at": now})
    doc = await coll.find_one({"_id": "a"})
    assert doc is not None
    assert doc["name"] == "web-01"
    assert doc["at"].tzinfo is not None
    names = {ix["name"] async for ix in await coll.list_indexes()}
    assert {"name_unique", "at"} <= names


async def test_claim_single_process(mongo_db: Db) -> None:
    coll = mongo_db["claims"]
    results = await asyncio.gather(*(claim(coll, {"_id": "k", "by": i}) for i in range(20)))
    assert results.count(True) == 1
    assert await coll.count_documents({}) == 1


def _claimer(url: str, db: str, key: str, n: int, queue: Any) -> None:
    async def run() -> list[bool]:
        client = open_client(url)
        try:
            coll = client[db]["claims"]
            return list(
                await asyncio.gather(
                    *(claim(coll, {"_id": key, "worker": f"{uuid.uuid4()}"}) for _ in range(n))
                )
            )
        finally:
            await client.close()

    queue.put(asyncio.run(run()))


async def test_claim_race_two_processes(mongo_db: Db, stack: Any) -> None:
    """50 concurrent claimers from 2 processes at one key: exactly one winner."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    key = uuid.uuid4().hex
    procs = [
        ctx.Process(target=_claimer, args=(stack.mongodb_url, mongo_db.name, key, 25, queue))
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    outcomes = [await asyncio.to_thread(queue.get, True, 60) for _ in procs]
    for proc in procs:
        await asyncio.to_thread(proc.join, 30)
        assert proc.exitcode == 0
    flat = [won for batch in outcomes for won in batch]
    assert len(flat) == 50
    assert flat.count(True) == 1
    assert await mongo_db["claims"].count_documents({"_id": key}) == 1


async def test_pubsub_round_trip(redis_client: Redis) -> None:
    bus = EventBus(redis_client)
    channel = f"test:{uuid.uuid4().hex}"
    received: list[dict[str, Any]] = []

    async def listen() -> None:
        async for _, payload in bus.subscribe(channel):
            received.append(payload)
            return

    task = asyncio.create_task(listen())
    for _ in range(50):  # wait until subscribed
        if (await redis_client.pubsub_numsub(channel))[0][1] > 0:
            break
        await asyncio.sleep(0.02)
    await bus.publish(channel, {"event_type": "Ping", "n": 1})
    await asyncio.wait_for(task, 5)
    assert received == [{"event_type": "Ping", "n": 1}]


async def test_rate_limiter_counts_and_blocks(redis_client: Redis) -> None:
    limiter = RateLimiter(redis_client, prefix=f"t{uuid.uuid4().hex[:6]}")
    decisions = [await limiter.hit("auth", "1.2.3.4", 5, 60) for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert decisions[0].remaining == 4
    assert decisions[4].remaining == 0
    assert decisions[5].retry_after >= 1
    assert decisions[0].headers()["X-RateLimit-Limit"] == "5"
    # Another subject has its own budget.
    assert (await limiter.hit("auth", "5.6.7.8", 5, 60)).allowed


async def test_rate_limiter_shared_between_clients(stack: Any) -> None:
    """Two limiter instances (two replicas) share one count."""
    from provisioning_common.redis_client import open_redis

    a, b = open_redis(stack.redis_url), open_redis(stack.redis_url)
    try:
        prefix = f"t{uuid.uuid4().hex[:6]}"
        la, lb = RateLimiter(a, prefix=prefix), RateLimiter(b, prefix=prefix)
        results = [await (la if i % 2 else lb).hit("general", "u1", 4, 60) for i in range(6)]
        assert [r.allowed for r in results] == [True] * 4 + [False] * 2
    finally:
        await a.aclose()
        await b.aclose()
