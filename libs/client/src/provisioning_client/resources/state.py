"""``client.state``: workflow progress and snapshots, system metrics and health."""

from __future__ import annotations

from .._convert import from_dict, from_list
from ..models import Snapshot, StateStatistics, SystemHealth, SystemMetrics, WorkflowProgress
from ._base import Resource


class StateAPI(Resource):
    async def progress(self, workflow_id: str) -> WorkflowProgress:
        path = f"/state/workflows/{workflow_id}/progress"
        return from_dict(WorkflowProgress, await self._transport.data("orchestrator", "GET", path))

    async def snapshots(self, workflow_id: str) -> list[Snapshot]:
        path = f"/state/workflows/{workflow_id}/snapshots"
        return from_list(Snapshot, await self._transport.data("orchestrator", "GET", path))

    async def system_metrics(self) -> SystemMetrics:
        data = await self._transport.data("orchestrator", "GET", "/state/system/metrics")
        return from_dict(SystemMetrics, data)

    async def system_health(self) -> SystemHealth:
        data = await self._transport.data("orchestrator", "GET", "/state/system/health")
        return from_dict(SystemHealth, data)

    async def statistics(self) -> StateStatistics:
        data = await self._transport.data("orchestrator", "GET", "/state/statistics")
        return from_dict(StateStatistics, data)
