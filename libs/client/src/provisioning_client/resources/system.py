"""``client.system``: health, readiness, Prometheus metrics and the OpenAPI document
of either service (none of them needs a token)."""

from __future__ import annotations

from typing import Any

from ..transport import Service
from ._base import Resource


class SystemAPI(Resource):
    async def health(self, service: Service = "orchestrator") -> Any:
        return await self._transport.data(service, "GET", "/health", auth=False)

    async def ready(self, service: Service = "orchestrator") -> Any:
        """``GET /ready``: readiness (dependencies reachable)."""
        return await self._transport.data(service, "GET", "/ready", auth=False)

    async def metrics_text(self, service: Service = "orchestrator") -> str:
        reply = await self._transport.request(
            service, "GET", "/metrics", auth=False, envelope=False
        )
        return str(reply.data)

    async def openapi(self, service: Service = "orchestrator") -> dict[str, Any]:
        reply = await self._transport.request(
            service, "GET", "/openapi.json", auth=False, envelope=False
        )
        return dict(reply.data)
