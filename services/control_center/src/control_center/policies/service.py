"""Policy management: CRUD, the change event, the explain endpoint and seeding."""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

from provisioning_common.errors import Conflict, NotFound
from provisioning_common.events import POLICIES_CHANNEL, EventBus
from provisioning_common.policy import PolicyEngine, policy_from_document
from provisioning_common.timeutil import utcnow

from ..audit.service import AuditLog
from .model import DEFAULT_POLICIES, normalise_rules
from .repository import PolicyRepository

log = logging.getLogger(__name__)

DEFAULTS_MARKER = "bootstrap:policies"


class PolicyService:
    def __init__(self, policies: PolicyRepository, audit: AuditLog, bus: EventBus) -> None:
        self._policies = policies
        self._audit = audit
        self._bus = bus

    async def _changed(self, policy_id: str, change: str) -> None:
        try:
            await self._bus.publish(POLICIES_CHANNEL, {"policy_id": policy_id, "change": change})
        except Exception as exc:  # stored already; subscribers also reload periodically
            log.warning("could not publish policies.changed: %s", type(exc).__name__)

    async def create(self, body: dict[str, Any], actor: str) -> dict[str, Any]:
        now = utcnow()
        doc = {
            "_id": str(uuid.uuid4()),
            "name": body["name"],
            "version": body["version"],
            "description": body.get("description"),
            "rules": normalise_rules(body["rules"]),
            "enabled": body["enabled"],
            "created_at": now,
            "updated_at": now,
        }
        await self._policies.insert(doc)
        await self._audit.record(
            action="policy.create",
            resource=f"policies/{doc['_id']}",
            result="success",
            user_id=actor,
            details={"name": doc["name"]},
        )
        await self._changed(doc["_id"], "created")
        return doc

    async def get(self, policy_id: str) -> dict[str, Any]:
        doc = await self._policies.get(policy_id)
        if doc is None:
            raise NotFound("Policy not found")
        return doc

    async def page(
        self, *, enabled: bool | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        query: dict[str, Any] = {} if enabled is None else {"enabled": enabled}
        return await self._policies.find_page(query, limit, offset)

    async def update(self, policy_id: str, body: dict[str, Any], actor: str) -> None:
        changes = {k: v for k, v in body.items() if k != "rules"}
        if "rules" in body:
            changes["rules"] = normalise_rules(body["rules"])
        changes["updated_at"] = utcnow()
        if not await self._policies.update(policy_id, changes):
            raise NotFound("Policy not found")
        await self._audit.record(
            action="policy.update",
            resource=f"policies/{policy_id}",
            result="success",
            user_id=actor,
            details={"fields": sorted(body)},
        )
        await self._changed(policy_id, "updated")

    async def delete(self, policy_id: str, actor: str) -> None:
        if not await self._policies.delete(policy_id):
            raise NotFound("Policy not found")
        await self._audit.record(
            action="policy.delete",
            resource=f"policies/{policy_id}",
            result="success",
            user_id=actor,
        )
        await self._changed(policy_id, "deleted")

    async def evaluate(
        self, *, user: dict[str, Any], action: str, resource: str, request: dict[str, Any]
    ) -> dict[str, Any]:
        docs = await self._policies.all_enabled()
        engine = PolicyEngine(policy_from_document({**d, "id": d["_id"]}) for d in docs)
        decision = engine.evaluate(user=user, action=action, resource=resource, request=request)
        return {**decision.to_dict(), "user": user}

    async def seed_defaults(self) -> None:
        """Default policies, once: fixed ids make concurrent seeding harmless, the
        marker keeps deleted defaults from coming back."""
        repo = self._policies
        if await repo.has_marker(DEFAULTS_MARKER):
            return
        now = utcnow()
        for policy in DEFAULT_POLICIES:
            with contextlib.suppress(Conflict):
                await repo.insert({**policy, "enabled": True, "created_at": now, "updated_at": now})
        await repo.claim_marker(DEFAULTS_MARKER)
