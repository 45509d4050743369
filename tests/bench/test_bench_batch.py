"""Bench: scheduling overhead per task of a 200-operation random DAG
(parallel_limit 10, no-op CLI) against the raw subprocess baseline measured in
the same run (the same 200 no-op processes, 10 at a time, no engine). Also prints the
database commands sent per task. ``BENCH_PREFILL=N`` stores N finished tasks first
(a long-lived database). Run: ``pytest -s tests/bench/test_bench_batch.py``."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from orchestrator.engine.model import COMPLETED, Defaults, TaskSpec, task_document
from provisioning_common.timeutil import utcnow
from tests.integration.test_batch_execution import make_harness

OPERATIONS = 200
PARALLEL = 10
# Finished tasks already stored before the batch runs (a long-lived database).
PREFILL = int(os.environ.get("BENCH_PREFILL", "0"))
ENGINE_COLLECTIONS = {
    "tasks",
    "task_attempts",
    "task_finals",
    "task_slots",
    "task_queue",
    "task_cancels",
    "events",
}
WRITES = {"insert", "update", "delete"}
NOT_COUNTED = {"createIndexes", "listIndexes", "endSessions", "dropDatabase"}


class CommandCounter(monitoring.CommandListener):
    """Database commands by (command, collection), reported per task."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        self.counts[(event.command_name, target if isinstance(target, str) else "")] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def per_task(self, *, writes: bool, engine: bool | None = None) -> float:
        total = sum(
            n
            for (cmd, coll), n in self.counts.items()
            if (cmd in WRITES) == writes
            and cmd not in NOT_COUNTED
            and (engine is None or (coll in ENGINE_COLLECTIONS) == engine)
        )
        return total / OPERATIONS


def random_dag(seed: int = 42) -> dict[str, Any]:
    rng = random.Random(seed)
    ops = []
    for i in range(OPERATIONS):
        # Mostly shallow fan-in to recent operations: a DAG with real width.
        pool = list(range(max(0, i - 30), i))
        deps = sorted(rng.sample(pool, min(len(pool), rng.choice([0, 0, 1, 1, 2, 3]))))
        ops.append(
            {
                "id": f"op{i:03d}",
                "type": "cluster_batch",
                "provider": "aws",
                "dependencies": [f"op{j:03d}" for j in deps],
                "cluster_type": f"c{i}",
            }
        )
    return {"name": "bench", "version": "1.0.0", "parallel_limit": PARALLEL, "operations": ops}


async def prefill(db: AsyncDatabase[dict[str, Any]], count: int) -> None:
    defaults, now = Defaults("/bin/true", 60, 3), utcnow()
    for start in range(0, count, 2000):
        docs = []
        for i in range(start, min(count, start + 2000)):
            doc = task_document(
                TaskSpec(name=f"old-{i}", subcommand=("servers", "create")), defaults, now
            )
            doc.update(status=COMPLETED, started_at=now, completed_at=now, attempts=1)
            docs.append(doc)
        await db["tasks"].insert_many(docs)


async def raw_baseline(cli: str, count: int, parallel: int) -> float:
    sem = asyncio.Semaphore(parallel)

    async def one(i: int) -> None:
        async with sem:
            proc = await asyncio.create_subprocess_exec(
                cli,
                "cluster",
                "create",
                f"c{i}",
                "--provider",
                "aws",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            await proc.communicate()

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - start


@pytest.mark.slow
async def test_bench_batch_scheduling_overhead(
    stack: Any, mongo_db: AsyncDatabase[dict[str, Any]], redis_client: Redis, tmp_path: Path
) -> None:
    cli = shutil.which("true") or "/bin/true"
    await prefill(mongo_db, PREFILL)
    baseline = await raw_baseline(cli, OPERATIONS, PARALLEL)
    # The same database through a client that counts what the engine and batches send.
    counter = CommandCounter()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        stack.mongodb_url, tz_aware=True, uuidRepresentation="standard", event_listeners=[counter]
    )
    h, stoppables = await make_harness(
        client[mongo_db.name],
        redis_client,
        tmp_path,
        cli=cli,
        concurrency=PARALLEL * 2,
        poll=0.05,
        interval=1.0,
        orphan_after=300.0,
    )
    try:
        start = time.perf_counter()
        batch_id = await h.submit(random_dag())
        submitted = time.perf_counter() - start
        doc = await h.wait(batch_id, timeout=600)
        wall = time.perf_counter() - start
        tasks = {d["_id"]: d async for d in mongo_db["tasks"].find({"batch_id": batch_id})}
    finally:
        for s in stoppables:
            await s.stop()
        await client.close()
    assert doc["status"] == "Completed"
    # Where the time goes: dependencies-ready → start (queue, slot, claim) and the
    # run itself as the engine records it (spawn, output, finalize).
    waits = [
        (
            t["started_at"]
            - max([tasks[d]["completed_at"] for d in t["dependencies"]] or [t["created_at"]])
        ).total_seconds()
        for t in tasks.values()
    ]
    runs = [(t["completed_at"] - t["started_at"]).total_seconds() for t in tasks.values()]
    per_task = wall / OPERATIONS
    base_per_task = baseline / OPERATIONS
    overhead = per_task - base_per_task
    print(
        f"\nbench batch: {OPERATIONS} operations (1 task each), parallel_limit {PARALLEL}, "
        f"no-op CLI {cli}, {PREFILL} finished tasks stored before\n"
        f"  batch wall {wall:.2f}s = {per_task * 1000:.1f} ms/task "
        f"(submission {submitted:.2f}s)\n"
        f"  median ready->start {statistics.median(waits) * 1000:.0f} ms, "
        f"median recorded run {statistics.median(runs) * 1000:.0f} ms\n"
        f"  raw subprocess baseline {baseline:.2f}s = {base_per_task * 1000:.2f} ms/task\n"
        f"  scheduling overhead {overhead * 1000:.1f} ms/task; "
        f"overhead / baseline = {overhead / base_per_task:.1f}x\n"
        f"  database commands per task: writes {counter.per_task(writes=True):.1f} "
        f"(engine+events {counter.per_task(writes=True, engine=True):.1f}), "
        f"reads {counter.per_task(writes=False):.1f} "
        f"(engine+events {counter.per_task(writes=False, engine=True):.1f})"
    )
