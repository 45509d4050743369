"""State endpoints' use cases on real data: progress/ETA of tasks and batches,
snapshots, metrics from the store and psutil, health probes, statistics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from orchestrator.engine import TaskSpec
from orchestrator.state import service
from orchestrator.state.repository import TaskStatsRepository, database_size_bytes, ping
from orchestrator.state.service import StateContext
from provisioning_common.errors import NotFound
from tests.integration.test_batch_execution import Harness, make_harness
from tests.support.contract import CONTRACT_BATCH


@pytest.fixture
async def harness(
    mongo_db: AsyncDatabase[dict[str, Any]], redis_client: Redis, tmp_path: Path
) -> AsyncIterator[Harness]:
    h, stoppables = await make_harness(mongo_db, redis_client, tmp_path)
    try:
        yield h
    finally:
        for s in stoppables:
            await s.stop()


def state_ctx(h: Harness, redis: Redis, *, coordinator_ok: bool = True) -> StateContext:
    async def storage() -> bool:
        await ping(h.db)
        return True

    async def monitoring() -> bool:
        return bool(await redis.ping())

    async def size() -> int:
        return await database_size_bytes(h.db)

    return StateContext(
        batches=h.repo,
        store=h.engine.store,
        snapshots=h.snapshots,
        stats=TaskStatsRepository(h.engine.store),
        storage_probe=storage,
        coordinator_probe=(h.coordinator.healthy if coordinator_ok else lambda: False),
        monitoring_probe=monitoring,
        database_size=size,
    )


async def test_progress_snapshots_metrics_statistics(harness: Harness, redis_client: Redis) -> None:
    ctx = state_ctx(harness, redis_client)
    batch_id = await harness.submit(CONTRACT_BATCH)
    await harness.wait(batch_id)

    progress = await service.progress(ctx, batch_id)
    assert progress["workflow_id"] == batch_id
    assert progress["progress"] == 100.0
    assert progress["total_steps"] == 5
    assert progress["completed_steps"] == 5
    assert progress["estimated_time_remaining"] == 0

    # A standalone task of a kind seen before gets an ETA from those durations.
    task_id = await harness.engine.create_task(
        TaskSpec(
            name="later",
            subcommand=("taskserv", "create"),
            args=("extra", "--provider", "aws"),
            kind="taskserv.create",
            dependencies=("does-not-exist",),
        )
    )
    task_view = await service.progress(ctx, task_id)
    assert task_view["total_steps"] == 1
    assert task_view["completed_steps"] == 0
    assert isinstance(task_view["estimated_time_remaining"], int)

    snaps = await service.snapshots(ctx, batch_id)
    assert [s["state"] for s in snaps] == ["pending", "running", "completed"]
    assert snaps[-1]["details"]["operations"] == {
        "upcloud_servers": "Completed",
        "aws_taskservs": "Completed",
    }
    some_task = (await harness.engine.store.find_by_batch(batch_id))[0]
    task_snaps = await service.snapshots(ctx, str(some_task["_id"]))
    assert [s["state"] for s in task_snaps] == ["pending", "running", "completed"]

    metrics = await service.system_metrics(ctx)
    assert metrics["total_workflows"] == 2  # the batch and the standalone task
    assert metrics["completed_workflows"] == 1
    assert metrics["active_workflows"] == 1
    load = metrics["system_load"]
    assert 0.0 <= load["cpu_usage"] <= 100.0
    assert load["memory_usage"] > 0
    assert 0.0 < load["disk_usage"] <= 100.0

    stats = await service.statistics(ctx)
    assert stats["total_workflows"] == 2
    assert stats["active_snapshots"] >= 3
    assert stats["storage_usage"].endswith(("B", "KB", "MB", "GB"))
    assert stats["storage_usage_bytes"] > 0
    assert stats["average_workflow_duration"] > 0

    with pytest.raises(NotFound):
        await service.progress(ctx, "unknown-id")
    with pytest.raises(NotFound):
        await service.snapshots(ctx, "unknown-id")


async def test_health_components_are_checked(harness: Harness, redis_client: Redis) -> None:
    import asyncio

    for _ in range(50):
        if harness.coordinator.healthy():
            break
        await asyncio.sleep(0.1)
    healthy = await service.health(state_ctx(harness, redis_client))
    assert healthy["overall_status"] == "Healthy"
    assert healthy["components"] == {
        "storage": "Healthy",
        "batch_coordinator": "Healthy",
        "monitoring": "Healthy",
    }
    degraded = await service.health(state_ctx(harness, redis_client, coordinator_ok=False))
    assert degraded["overall_status"] == "Degraded"
    assert degraded["components"]["batch_coordinator"] == "Unhealthy"
