"""Thin handlers for ``/state/*``."""

from __future__ import annotations

from aiohttp import web

from orchestrator.auth import authorize
from orchestrator.deps import container_of
from orchestrator.engine.index import owner_of
from provisioning_common.envelope import ok
from provisioning_common.openapi import api_doc

from . import service
from .schemas import HealthOut, MetricsOut, ProgressOut, SnapshotOut, StatisticsOut

routes = web.RouteTableDef()
_PROGRESS = ProgressOut()
_SNAPSHOTS = SnapshotOut(many=True)
_METRICS = MetricsOut()
_HEALTH = HealthOut()
_STATISTICS = StatisticsOut()


async def _authorize_workflow(request: web.Request) -> None:
    """``read`` on ``state:*`` and on the workflow itself (``batches:<id>`` or
    ``tasks:<id>``, with its owner): "own only" policies hold here too."""
    await authorize(request, "read", "state:*")
    workflow_id = request.match_info["id"]
    ctx = container_of(request).state
    batch = await ctx.batches.get(workflow_id)
    if batch is not None:
        owner = str(batch.get("created_by") or "")
        await authorize(request, "read", f"batches:{workflow_id}", owner=owner)
        return
    task = await ctx.store.get(workflow_id)
    owner = owner_of(task) if task is not None else ""
    await authorize(request, "read", f"tasks:{workflow_id}", owner=owner)


@routes.get("/state/workflows/{id}/progress")
@api_doc(summary="Progress of a workflow (task or batch)", tags=["state"], response=ProgressOut)
async def workflow_progress(request: web.Request) -> web.Response:
    await _authorize_workflow(request)
    progress = await service.progress(container_of(request).state, request.match_info["id"])
    return ok(_PROGRESS.dump(progress))


@routes.get("/state/workflows/{id}/snapshots")
@api_doc(
    summary="Snapshots of a workflow, one per status change",
    tags=["state"],
    response=SnapshotOut,
    many=True,
)
async def workflow_snapshots(request: web.Request) -> web.Response:
    await _authorize_workflow(request)
    snapshots = await service.snapshots(container_of(request).state, request.match_info["id"])
    return ok(_SNAPSHOTS.dump(snapshots))


@routes.get("/state/system/metrics")
@api_doc(summary="Workflow counts and host load", tags=["state"], response=MetricsOut)
async def system_metrics(request: web.Request) -> web.Response:
    await authorize(request, "read", "state:*")
    return ok(_METRICS.dump(await service.system_metrics(container_of(request).state)))


@routes.get("/state/system/health")
@api_doc(
    summary="Health of storage, batch coordinator and monitoring",
    tags=["state"],
    response=HealthOut,
)
async def system_health(request: web.Request) -> web.Response:
    await authorize(request, "read", "state:*")
    return ok(_HEALTH.dump(await service.health(container_of(request).state)))


@routes.get("/state/statistics")
@api_doc(summary="State manager statistics", tags=["state"], response=StatisticsOut)
async def statistics(request: web.Request) -> web.Response:
    await authorize(request, "read", "state:*")
    return ok(_STATISTICS.dump(await service.statistics(container_of(request).state)))
