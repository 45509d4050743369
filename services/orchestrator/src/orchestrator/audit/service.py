"""Audit records → durable outbox → ``POST /audit/events``, many records per call
(see the package docstring)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp

from provisioning_common.aio import BackgroundTasks
from provisioning_common.envelope import format_timestamp
from provisioning_common.outbox import AttemptResult, Outbox, OutboxItem, RetryPolicy
from provisioning_common.remote_auth import ServiceTokenClient
from provisioning_common.timeutil import utcnow

from ..metrics import AUDIT_DELIVERIES
from .settings import AuditSettings

log = logging.getLogger(__name__)

# POSTs one body to ``/audit/events`` (one event, or ``{"events": [...]}``);
# answers (HTTP status, decoded body).
Sender = Callable[[Mapping[str, Any]], Awaitable[tuple[int, Any]]]
AUDIT_PATH = "/audit/events"
# Answers that reject the body itself: a record the control center will never
# accept, a body too large, or a control center without the batch form.
_REJECTED = frozenset({400, 413, 422})
_SINGLE_CONCURRENCY = 8


class AuditService:
    def __init__(self, db: Any, sender: Sender, settings: AuditSettings) -> None:
        self.settings = settings
        self.sender = sender
        policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            base_delay=min(1.0, settings.retry_max_delay),
            max_delay=settings.retry_max_delay,
            attempt_timeout=15.0,
            lease_seconds=45.0,
            poll_interval=settings.poll_seconds,
            batch_size=settings.batch_size,
        )
        self.outbox = Outbox(
            db, "audit", policy=policy, deliver_batch=self._deliver_batch, on_attempt=_count
        )
        self._loops = BackgroundTasks()

    async def start(self) -> None:
        await self.outbox.ensure_indexes()
        if self.settings.enabled:
            self._loops.start(self.outbox.run(), "audit-outbox")

    async def stop(self) -> None:
        await self._loops.stop()

    async def record(
        self,
        *,
        action: str,
        resource: str,
        user_id: str | None,
        result: str,
        details: Mapping[str, Any] | None,
    ) -> str:
        record_id = str(uuid.uuid4())
        event = {
            "id": record_id,
            "timestamp": format_timestamp(utcnow()),
            "user_id": user_id,
            "action": action,
            "resource": resource,
            "result": result,
            "details": dict(details or {}),
        }
        await self.outbox.enqueue(record_id, "audit", event, fields={"action": action}, new_id=True)
        return record_id

    async def _deliver_batch(self, batch: Sequence[tuple[OutboxItem, int]]) -> list[AttemptResult]:
        """All due records in one call (``{"events": [...]}``). When the control
        center rejects the body (an invalid record, too large, or no batch form),
        each record goes alone, so that one bad record fails only itself."""
        if len(batch) == 1:
            return [await self._deliver_one(batch[0][0])]
        result = await self._send({"events": [item.payload for item, _ in batch]})
        if result.status_code not in _REJECTED:
            return [result] * len(batch)
        gate = asyncio.Semaphore(_SINGLE_CONCURRENCY)

        async def alone(item: OutboxItem) -> AttemptResult:
            async with gate:
                return await self._deliver_one(item)

        return list(await asyncio.gather(*(alone(item) for item, _ in batch)))

    async def _deliver_one(self, item: OutboxItem) -> AttemptResult:
        return await self._send(item.payload)

    async def _send(self, body: Mapping[str, Any]) -> AttemptResult:
        try:
            status, _body = await self.sender(body)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            # control center unreachable, or no service token (it answered an error)
            return AttemptResult(ok=False, error=f"connection error: {type(exc).__name__}")
        if status in (200, 201):
            return AttemptResult(ok=True, status_code=status)
        # A body the control center rejects as invalid will never be accepted.
        permanent = status in _REJECTED
        return AttemptResult(
            ok=False, status_code=status, error=f"HTTP {status}", retry=not permanent
        )


def _count(item: OutboxItem, result: AttemptResult, outcome: str) -> None:
    AUDIT_DELIVERIES.labels(outcome).inc()


def service_sender(client: ServiceTokenClient) -> Sender:
    """POST with the orchestrator's service token (renewed on a 401)."""

    async def send(body: Mapping[str, Any]) -> tuple[int, Any]:
        return await client.call("POST", AUDIT_PATH, json=dict(body))

    return send
