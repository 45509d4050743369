"""``client.policies``: authorization policies and their evaluation."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping
from typing import Any

from .._convert import from_dict
from ..models import Page, Policy, PolicyDecision
from ._base import Resource


class PoliciesAPI(Resource):
    async def list(self, *, limit: int | None = None, offset: int | None = None) -> Page[Policy]:
        params = {"limit": limit, "offset": offset}
        return await self._transport.page("control_center", "/policies", Policy, params)

    def iter(self, *, page_size: int = 100) -> AsyncIterator[Policy]:
        return self._transport.iterate("control_center", "/policies", Policy, {}, page_size)

    async def create(
        self,
        /,
        name: str,
        rules: builtins.list[Mapping[str, Any]],
        version: str = "1.0.0",
        **extra: Any,
    ) -> Policy:
        body = {"name": name, "version": version, "rules": [dict(r) for r in rules], **extra}
        data = await self._transport.data("control_center", "POST", "/policies", body=body)
        return from_dict(Policy, data)

    async def get(self, policy_id: str) -> Policy:
        data = await self._transport.data("control_center", "GET", f"/policies/{policy_id}")
        return from_dict(Policy, data)

    async def update(self, /, policy_id: str, **changes: Any) -> Any:
        body = {k: v for k, v in changes.items() if v is not None}
        return await self._transport.data(
            "control_center", "PUT", f"/policies/{policy_id}", body=body
        )

    async def delete(self, policy_id: str) -> Any:
        return await self._transport.data("control_center", "DELETE", f"/policies/{policy_id}")

    async def evaluate(
        self,
        action: str,
        resource: str,
        *,
        user: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> PolicyDecision:
        body: dict[str, Any] = {"action": action, "resource": resource}
        if user is not None:
            body["user"] = dict(user)
        if context is not None:
            body["context"] = dict(context)
        data = await self._transport.data("control_center", "POST", "/policies/evaluate", body=body)
        return from_dict(PolicyDecision, data)
