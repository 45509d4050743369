"""Writing and querying the audit log: :class:`AuditLog`, the one writer every
slice is given. Each newly stored record is appended to the hash chain
(:class:`~control_center.audit.chain_service.AuditChain`) right after its insert;
a duplicate (a retried ingestion) is not chained twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .chain_service import AuditChain
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
    def __init__(self, repo: AuditRepository, chain: AuditChain | None = None) -> None:
        self._repo = repo
        self.chain = chain

    async def _store(self, docs: list[dict[str, Any]]) -> list[bool]:
        """Insert, then chain the new records; a duplicate (a retried ingestion) whose
        first attempt stored it but failed before chaining it is chained now."""
        stored = await self._repo.insert_many(docs)
        if self.chain is None:
            return stored
        fresh = [d for d, new in zip(docs, stored, strict=True) if new]
        taken = {str(d["_id"]) for d in fresh}
        seen = list(
            dict.fromkeys(
                str(d["_id"])
                for d, new in zip(docs, stored, strict=True)
                if not new and str(d["_id"]) not in taken
            )
        )
        if seen:  # rare: only retries repeat an id
            lost = await self.chain.unchained(seen)
            fresh += [d for d in await self._repo.get_many(lost) if d is not None]
        await self.chain.append(fresh)
        return stored

    async def record(
        self,
        *,
        action: str,
        resource: str,
        result: str,
        user_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        record = AuditRecord(
            action=action,
            resource=resource,
            result=result,
            user_id=user_id,
            details=details or {},
        )
        await self._store([record.to_document()])

    async def ingest(self, event: dict[str, Any]) -> bool:
        """Store another service's event; False when this id was already stored."""
        return (await self._store([_from_event(event).to_document()]))[0]

    async def ingest_many(self, events: Sequence[dict[str, Any]]) -> list[bool]:
        """Store a batch of events in one write; per event, False when its id was
        already stored (a retried batch, or the same id twice in the batch)."""
        return await self._store([_from_event(event).to_document() for event in events])

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
