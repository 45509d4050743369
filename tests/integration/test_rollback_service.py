"""Checkpoints, rollback by checkpoint and by operation ids, restore — on the real
engine, database and the CLI simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from orchestrator.rollback import service
from provisioning_common.errors import Conflict, NotFound, UnprocessableEntity
from tests.integration.test_batch_execution import Harness, make_harness, read_log


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


def chain_batch(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "version": "1.0.0",
        "parallel_limit": 2,
        "operations": [
            {
                "id": "servers",
                "type": "server_batch",
                "provider": "upcloud",
                "server_configs": [{"name": f"{name}-web", "plan": "p", "zone": "z"}],
            },
            {
                "id": "cluster",
                "type": "cluster_batch",
                "provider": "upcloud",
                "dependencies": ["servers"],
                "cluster_type": f"{name}-k8s",
            },
            {
                "id": "taskservs",
                "type": "taskserv_batch",
                "provider": "upcloud",
                "dependencies": ["cluster"],
                "taskservs": [f"{name}-cilium"],
            },
        ],
    }


async def test_checkpoint_rollback_runs_deletes_newest_first(harness: Harness) -> None:
    ctx = harness.rollback
    before = await harness.submit(chain_batch("old"))
    await harness.wait(before)
    cp = await service.create_checkpoint(ctx, "before_update", "Checkpoint before v2")
    doc = await service.get_checkpoint(ctx, cp)
    assert doc["operations_count"] == 3
    assert doc["size_bytes"] > 0
    after = await harness.submit(chain_batch("new"))
    await harness.wait(after)

    result = await service.execute(ctx, checkpoint_id=cp, operation_ids=None)
    tasks = [
        (t["name"], t["status"], t["error"])
        async for t in harness.db["tasks"].find({"batch_id": None})
    ]
    assert result["success"] is True, (result, tasks)
    assert result["operations_executed"] == 3
    assert result["operations_failed"] == 0
    assert result["duration"] > 0
    deletes = [c["argv"] for c in read_log(harness.log) if c["argv"][1:2] == ["delete"]]
    assert deletes == [
        ["taskserv", "delete", "new-cilium", "--provider", "upcloud"],
        ["cluster", "delete", "new-k8s", "--provider", "upcloud"],
        ["servers", "delete", "--provider", "upcloud", "--name", "new-web"],
    ]
    # A second rollback to the same checkpoint has nothing left to compensate.
    again = await service.execute(ctx, checkpoint_id=cp, operation_ids=None)
    assert again["operations_executed"] == 0
    assert again["success"] is True
    stats = await service.statistics(ctx)
    assert stats["total_checkpoints"] == 1
    assert stats["total_rollbacks"] == 2
    assert stats["success_rate"] == 100.0


async def test_partial_rollback_by_operation_ids(harness: Harness) -> None:
    ctx = harness.rollback
    batch_id = await harness.submit(chain_batch("part"))
    await harness.wait(batch_id)
    entries, _ = await ctx.repo.list_ledger(0, 10)
    chosen = [e["_id"] for e in entries if e["operation_id"] in ("servers", "taskservs")]
    result = await service.execute(ctx, checkpoint_id=None, operation_ids=chosen)
    assert result["operations_executed"] == 2
    deletes = [c["argv"][0] for c in read_log(harness.log) if c["argv"][1:2] == ["delete"]]
    assert deletes == ["taskserv", "servers"]
    with pytest.raises(UnprocessableEntity):
        await service.execute(ctx, checkpoint_id=None, operation_ids=["nope"])
    with pytest.raises(NotFound):
        await service.execute(ctx, checkpoint_id="missing", operation_ids=None)


async def test_refused_while_batch_running_and_restore(
    mongo_db: AsyncDatabase[dict[str, Any]], redis_client: Redis, tmp_path: Path
) -> None:
    h, stoppables = await make_harness(
        mongo_db, redis_client, tmp_path, env={"PROVISIONING_SIM_SLEEP": "1.5"}
    )
    try:
        ctx = h.rollback
        first = await h.submit(chain_batch("one"))
        await h.wait(first, timeout=30)
        cp = await service.create_checkpoint(ctx, "one_done", None)
        second = await h.submit(chain_batch("two"))
        with pytest.raises(Conflict):
            await service.execute(ctx, checkpoint_id=cp, operation_ids=None)
        with pytest.raises(Conflict):
            await service.restore(ctx, cp)
        await h.wait(second, timeout=30)
        message = await service.restore(ctx, cp)
        assert message == f"State restored from checkpoint {cp}"
        assert await h.repo.get(second) is None
        restored = await h.repo.get(first)
        assert restored is not None
        assert restored["status"] == "Completed"
        detail = await service.get_checkpoint(ctx, cp)
        assert detail["last_restored_at"] is not None
    finally:
        for s in stoppables:
            await s.stop()
