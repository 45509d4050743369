"""Bench: scheduling overhead per task of a 200-operation random DAG
(parallel_limit 10, no-op CLI) against the raw subprocess baseline measured in
the same run (the same 200 no-op processes, 10 at a time, no engine)."""

from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from tests.integration.test_batch_execution import make_harness

OPERATIONS = 200
PARALLEL = 10


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
    mongo_db: AsyncDatabase[dict[str, Any]], redis_client: Redis, tmp_path: Path
) -> None:
    cli = shutil.which("true") or "/bin/true"
    baseline = await raw_baseline(cli, OPERATIONS, PARALLEL)
    h, stoppables = await make_harness(
        mongo_db,
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
        f"no-op CLI {cli}\n"
        f"  batch wall {wall:.2f}s = {per_task * 1000:.1f} ms/task "
        f"(submission {submitted:.2f}s)\n"
        f"  median ready->start {statistics.median(waits) * 1000:.0f} ms, "
        f"median recorded run {statistics.median(runs) * 1000:.0f} ms\n"
        f"  raw subprocess baseline {baseline:.2f}s = {base_per_task * 1000:.2f} ms/task\n"
        f"  scheduling overhead {overhead * 1000:.1f} ms/task; "
        f"overhead / baseline = {overhead / base_per_task:.1f}x"
    )
