"""Writing and querying the audit log: :class:`AuditLog`, the one writer every
slice is given."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .model import AuditRecord, from_document
from .repository import AuditRepository


def _from_event(event: dict[str, Any]) -> AuditRecord:
    return AuditRecord(
        id=event["id"],
        timestamp=event["timestamp"],
        user_id=event.get("user_id"),
        action=event["action"],
        resource=event["resource"],
        result=event["result"],
        details=event.get("details") or {},
    )


class AuditLog:
    def __init__(self, repo: AuditRepository) -> None:
        self._repo = repo

    async def record(
        self,
        *,
        action: str,
        resource: str,
        result: str,
        user_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        await self._repo.insert(
            AuditRecord(
                action=action,
                resource=resource,
                result=result,
                user_id=user_id,
                details=details or {},
            ).to_document()
        )

    async def ingest(self, event: dict[str, Any]) -> bool:
        """Store another service's event; False when this id was already stored."""
        return await self._repo.insert(_from_event(event).to_document())

    async def ingest_many(self, events: Sequence[dict[str, Any]]) -> list[bool]:
        """Store a batch of events in one write; per event, False when its id was
        already stored (a retried batch, or the same id twice in the batch)."""
        return await self._repo.insert_many([_from_event(event).to_document() for event in events])

    async def search(
        self,
        *,
        user_id: str | None = None,
        action: str | None = None,
        resource: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        query: dict[str, Any] = {}
        if user_id is not None:
            query["user_id"] = user_id
        if action is not None:
            query["action"] = action
        if resource is not None:
            query["resource"] = resource
        if since is not None or until is not None:
            span: dict[str, Any] = {}
            if since is not None:
                span["$gte"] = since
            if until is not None:
                span["$lte"] = until
            query["timestamp"] = span
        docs, total = await self._repo.search(query, limit, offset)
        return [from_document(d) for d in docs], total
