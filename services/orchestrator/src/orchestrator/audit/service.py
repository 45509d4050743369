"""Audit records → durable outbox → ``POST /audit/events``, many records per call
(see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from provisioning_common.config import EnvReader
from provisioning_common.envelope import format_timestamp
from provisioning_common.middleware import REQUEST_ID_KEY
from provisioning_common.outbox import AttemptResult, Outbox, OutboxItem, RetryPolicy
from provisioning_common.timeutil import utcnow
from provisioning_common.webapp import DATABASE

from ..metrics import AUDIT_DELIVERIES

log = logging.getLogger(__name__)

# POSTs one body to ``/audit/events`` (one event, or ``{"events": [...]}``);
# answers (HTTP status, decoded body).
Sender = Callable[[Mapping[str, Any]], Awaitable[tuple[int, Any]]]
AUDIT_PATH = "/audit/events"
# The control center takes at most this many events per call.
MAX_BATCH = 500
# Answers that reject the body itself: a record the control center will never
# accept, a body too large, or a control center without the batch form.
_REJECTED = frozenset({400, 413, 422})
_SINGLE_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class AuditSettings:
    enabled: bool = True
    max_attempts: int = 10000
    retry_max_delay: float = 30.0
    poll_seconds: float = 0.5
    batch_size: int = 200

    @classmethod
    def from_env(cls, env: EnvReader | None = None) -> AuditSettings:
        env = env or EnvReader()
        return cls(
            enabled=env.bool("AUDIT_ENABLED", True),
            max_attempts=env.int("AUDIT_MAX_ATTEMPTS", 10000, low=1),
            retry_max_delay=env.float("AUDIT_RETRY_MAX_DELAY_SECONDS", 30.0, low=0.05),
            poll_seconds=env.float("AUDIT_POLL_SECONDS", 0.5, low=0.05),
            batch_size=env.int("AUDIT_BATCH_SIZE", 200, low=1, high=MAX_BATCH),
        )


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
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.outbox.ensure_indexes()
        if self.settings.enabled:
            self._task = asyncio.create_task(self.outbox.run(), name="audit-outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

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


AUDIT = web.AppKey("audit", AuditService)


async def record_audit(
    target: web.Request | web.Application,
    *,
    action: str,
    resource: str,
    user_id: str | None = None,
    result: str = "success",
    details: Mapping[str, Any] | None = None,
) -> str | None:
    """Queue one audit record for the control center; returns its id (None when
    auditing is not set up or the record could not be stored, which is logged)."""
    app = target.app if isinstance(target, web.Request) else target
    extra = dict(details or {})
    if isinstance(target, web.Request):
        if user_id is None:
            principal = _principal(target)
            user_id = getattr(principal, "sub", None)
        request_id = target.get(REQUEST_ID_KEY)
        if request_id:
            extra.setdefault("request_id", request_id)
    service = app.get(AUDIT)
    if service is None:
        log.warning("audit not set up; dropped %s on %s", action, resource)
        return None
    try:
        return await service.record(
            action=action, resource=resource, user_id=user_id, result=result, details=extra
        )
    except Exception:
        log.exception("could not store audit record %s on %s", action, resource)
        return None


async def record_action(
    request: web.Request,
    verb: str,
    policy_resource: str,
    *,
    result: str = "success",
    details: Mapping[str, Any] | None = None,
) -> str | None:
    """Audit what a handler just authorized: ``verb`` on ``kind:name`` (the policy
    resource) becomes action ``<kind, singular>.<verb>`` on resource ``kind/name``
    (``create`` on ``servers:web-01`` → ``server.create`` on ``servers/web-01``)."""
    kind, _, name = policy_resource.partition(":")
    action = f"{kind[:-1] if kind.endswith('s') else kind}.{verb}"
    resource = f"{kind}/{name}" if name else kind
    return await record_audit(
        request, action=action, resource=resource, result=result, details=details
    )


def _principal(request: web.Request) -> Any:
    from ..auth import PRINCIPAL

    return request.get(PRINCIPAL)


def _sender(app: web.Application) -> Sender:
    """POST with the service token of the auth feature (renewed on a 401)."""

    async def send(body: Mapping[str, Any]) -> tuple[int, Any]:
        from ..auth import AUTH

        auth = app[AUTH]
        return await auth.service.call("POST", AUDIT_PATH, json=dict(body))

    return send


def setup(app: web.Application) -> None:
    settings = AuditSettings.from_env()

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        service = AuditService(app[DATABASE], _sender(app), settings)
        app[AUDIT] = service
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app.cleanup_ctx.append(ctx)
