"""State use cases: workflow progress and snapshots (a workflow is a task or a
batch), system metrics measured on the host, health of the components,
statistics. Repositories and probes are passed in."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psutil

from orchestrator.engine.model import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING
from provisioning_common.errors import NotFound
from provisioning_common.timeutil import utcnow

from . import model
from .ports import BatchReader, TaskReader
from .repository import SnapshotRepository, TaskStatsRepository

Probe = Callable[[], Awaitable[bool]]


@dataclass
class StateContext:
    batches: BatchReader
    store: TaskReader
    snapshots: SnapshotRepository
    stats: TaskStatsRepository
    storage_probe: Probe
    coordinator_probe: Callable[[], bool]
    monitoring_probe: Probe
    database_size: Callable[[], Awaitable[int]]
    check_timeout: float = 3.0


async def _expected(ctx: StateContext, kinds: set[str]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for kind in kinds:
        out[kind] = model.mean(await ctx.stats.recent_durations(kind=kind, limit=50))
    return out


async def progress(ctx: StateContext, workflow_id: str) -> dict[str, Any]:
    now = utcnow()
    batch = await ctx.batches.get(workflow_id)
    if batch is not None:
        tasks = await ctx.store.find_by_batch(workflow_id)
        kinds = {
            str(t.get("kind")) for t in tasks if t.get("kind") and t["status"] not in model.FINISHED
        }
        return model.batch_progress(batch, tasks, await _expected(ctx, kinds), now)
    task = await ctx.store.get(workflow_id)
    if task is None:
        raise NotFound(f"Workflow {workflow_id} not found")
    kind = task.get("kind")
    expected = (await _expected(ctx, {str(kind)})).get(str(kind)) if kind else None
    return model.task_progress(task, expected, now)


async def snapshots(ctx: StateContext, workflow_id: str) -> list[dict[str, Any]]:
    batch = await ctx.batches.get(workflow_id)
    if batch is not None:
        return [
            {
                "snapshot_id": d["_id"],
                "timestamp": d["timestamp"],
                "state": str(d["state"]).lower(),
                "details": d.get("details") or {},
            }
            for d in await ctx.snapshots.for_workflow(workflow_id)
        ]
    task = await ctx.store.get(workflow_id)
    if task is None:
        raise NotFound(f"Workflow {workflow_id} not found")
    return model.task_snapshots(task, await ctx.store.attempts(workflow_id))


async def _workflow_counts(ctx: StateContext) -> dict[str, int]:
    """Workflows are batches plus tasks submitted on their own."""
    counts: dict[str, int] = {}
    for source in (await ctx.batches.count_by_status(), await ctx.stats.standalone_counts()):
        for status, n in source.items():
            counts[status] = counts.get(status, 0) + n
    return counts


def _host_load() -> dict[str, float]:
    cpu = psutil.cpu_percent(interval=0.1)
    memory = psutil.virtual_memory()
    disk = shutil.disk_usage("/")
    return {
        "cpu_usage": round(float(cpu), 1),
        # MB in use, as the contract's example (2048) reads.
        "memory_usage": round((memory.total - memory.available) / (1024 * 1024), 1),
        "memory_percent": round(float(memory.percent), 1),
        "disk_usage": round(100.0 * disk.used / disk.total, 1) if disk.total else 0.0,
    }


async def system_metrics(ctx: StateContext) -> dict[str, Any]:
    counts = await _workflow_counts(ctx)
    load = await asyncio.to_thread(_host_load)  # cpu_percent samples for 0.1 s
    return {
        "total_workflows": sum(counts.values()),
        "active_workflows": counts.get(PENDING, 0) + counts.get(RUNNING, 0),
        "completed_workflows": counts.get(COMPLETED, 0),
        "failed_workflows": counts.get(FAILED, 0),
        "cancelled_workflows": counts.get(CANCELLED, 0),
        "system_load": load,
    }


async def _check(probe: Probe, limit: float) -> str:
    try:
        async with asyncio.timeout(limit):
            ok = await probe()
    except Exception:
        return model.UNHEALTHY
    return model.HEALTHY if ok else model.UNHEALTHY


async def health(ctx: StateContext) -> dict[str, Any]:
    storage, monitoring = await asyncio.gather(
        _check(ctx.storage_probe, ctx.check_timeout),
        _check(ctx.monitoring_probe, ctx.check_timeout),
    )
    components = {
        "storage": storage,
        "batch_coordinator": model.HEALTHY if ctx.coordinator_probe() else model.UNHEALTHY,
        "monitoring": monitoring,
    }
    return {
        "overall_status": model.overall_status(components),
        "components": components,
        "last_check": utcnow(),
    }


async def statistics(ctx: StateContext) -> dict[str, Any]:
    counts = await _workflow_counts(ctx)
    size = await ctx.database_size()
    durations = await ctx.stats.recent_durations(limit=200, standalone=True)
    batch_durations = [
        (b["completed_at"] - b["started_at"]).total_seconds()
        for b in await ctx.batches.recent_finished(limit=1000)
        if b.get("completed_at") and b.get("started_at")
    ]
    average = model.mean([*durations, *batch_durations])
    return {
        "total_workflows": sum(counts.values()),
        "active_snapshots": await ctx.snapshots.count(),
        "storage_usage": model.format_size(size),
        "storage_usage_bytes": size,
        "average_workflow_duration": round(average, 1) if average is not None else 0,
    }
