"""``client.workflows``: the three workflow submissions, each returning its task id.

Every submission sends an ``Idempotency-Key`` (a new UUID unless one is given), so
retrying with the same key never creates a second task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..transport import idempotency_headers
from ._base import Resource


class WorkflowsAPI(Resource):
    async def _submit(self, path: str, body: Mapping[str, Any], key: str | None) -> str:
        data = await self._transport.data(
            "orchestrator", "POST", path, body=dict(body), headers=idempotency_headers(key)
        )
        return str(data)

    async def create_servers(
        self,
        infra: str,
        settings: str,
        *,
        check_mode: bool = False,
        wait: bool = True,
        idempotency_key: str | None = None,
    ) -> str:
        """``POST /workflows/servers/create`` → task id."""
        body = {"infra": infra, "settings": settings, "check_mode": check_mode, "wait": wait}
        return await self._submit("/workflows/servers/create", body, idempotency_key)

    create_server = create_servers  # singular alias

    async def create_taskserv(
        self,
        taskserv: str,
        infra: str,
        settings: str,
        *,
        operation: str = "create",
        check_mode: bool = False,
        wait: bool = True,
        idempotency_key: str | None = None,
    ) -> str:
        """``POST /workflows/taskserv/create`` → task id."""
        body = {
            "operation": operation,
            "taskserv": taskserv,
            "infra": infra,
            "settings": settings,
            "check_mode": check_mode,
            "wait": wait,
        }
        return await self._submit("/workflows/taskserv/create", body, idempotency_key)

    async def create_cluster(
        self,
        cluster_type: str,
        infra: str,
        settings: str,
        *,
        operation: str = "create",
        check_mode: bool = False,
        wait: bool = True,
        idempotency_key: str | None = None,
    ) -> str:
        """``POST /workflows/cluster/create`` → task id."""
        body = {
            "operation": operation,
            "cluster_type": cluster_type,
            "infra": infra,
            "settings": settings,
            "check_mode": check_mode,
            "wait": wait,
        }
        return await self._submit("/workflows/cluster/create", body, idempotency_key)
