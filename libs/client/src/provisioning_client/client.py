"""``ProvisioningClient``: async SDK for the orchestrator and the control center."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypeVar

import aiohttp

from ._convert import from_dict, from_list
from ._http import API_VERSION_ACCEPT, Reply, exchange
from .auth import TokenState
from .errors import AuthenticationError
from .events import EventStream
from .models import (
    AuditLog,
    Batch,
    BatchPlan,
    Checkpoint,
    Introspection,
    LedgerOperation,
    MfaEnrollment,
    Page,
    Policy,
    PolicyDecision,
    RollbackResult,
    RollbackStatistics,
    ServiceToken,
    Session,
    Snapshot,
    StateStatistics,
    SystemHealth,
    SystemMetrics,
    Task,
    TaskAttempt,
    User,
    WebhookDelivery,
    WorkflowProgress,
)

T = TypeVar("T")
Service = Literal["orchestrator", "control_center"]

DEFAULT_ORCHESTRATOR_URL = "http://localhost:9090"
DEFAULT_CONTROL_CENTER_URL = "http://localhost:9080"


def _iso(value: datetime | str | None) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


class ProvisioningClient:
    """Async client for both services.

    Use as ``async with ProvisioningClient(...) as client``. Authenticate with
    :meth:`login` (MFA code optional) or pass an existing ``token``. The access
    token is refreshed automatically shortly before it expires; ``on_session`` is
    called with every new :class:`Session` so callers can persist it."""

    def __init__(
        self,
        orchestrator_url: str = DEFAULT_ORCHESTRATOR_URL,
        control_center_url: str = DEFAULT_CONTROL_CENTER_URL,
        *,
        token: str | None = None,
        expires_at: datetime | None = None,
        refresh_token: str | None = None,
        refresh_expires_at: datetime | None = None,
        timeout: float = 30.0,
        refresh_margin: float = 60.0,
        api_version: int = 1,
        on_session: Callable[[Session], None] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.urls: dict[Service, str] = {
            "orchestrator": orchestrator_url.rstrip("/"),
            "control_center": control_center_url.rstrip("/"),
        }
        self.tokens = TokenState(
            token=token,
            expires_at=expires_at,
            refresh_token=refresh_token,
            refresh_expires_at=refresh_expires_at,
        )
        self.timeout = timeout
        self.refresh_margin = refresh_margin
        self.api_version = api_version
        self.on_session = on_session
        self.user: User | None = None
        self._session = session
        self._owns_session = session is None
        self._refresh_lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> ProvisioningClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._owns_session = True
        return self._session

    @property
    def token(self) -> str | None:
        return self.tokens.token

    def use_token(self, token: str, expires_at: datetime | None = None) -> None:
        """Authenticate with a token obtained elsewhere (e.g. a service token)."""
        self.tokens = TokenState(token=token, expires_at=expires_at)

    # ------------------------------------------------------------------ plumbing

    def _headers(self, auth: bool, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"Accept": API_VERSION_ACCEPT.format(version=self.api_version)}
        if auth:
            if not self.tokens.token:
                raise AuthenticationError("Not logged in: no access token", status=401)
            headers["Authorization"] = f"Bearer {self.tokens.token}"
        headers.update(extra or {})
        return headers

    async def _call(
        self,
        service: Service,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        envelope: bool = True,
        url: str | None = None,
    ) -> Reply:
        if auth:
            await self.ensure_fresh_token()
        return await exchange(
            self.http,
            method,
            url or self.urls[service] + path,
            headers=self._headers(auth, headers),
            params=None if url else params,
            body=body,
            envelope=envelope,
        )

    async def _data(self, service: Service, method: str, path: str, **kwargs: Any) -> Any:
        return (await self._call(service, method, path, **kwargs)).data

    async def _page(
        self,
        service: Service,
        path: str,
        cls: type[T],
        params: Mapping[str, Any],
        url: str | None = None,
    ) -> Page[T]:
        reply = await self._call(service, "GET", path, params=params, url=url)
        return Page(
            items=from_list(cls, reply.data),
            total=reply.header_int("X-Total-Count"),
            limit=reply.header_int("X-Limit"),
            offset=reply.header_int("X-Offset"),
            next_url=reply.next_url,
        )

    async def _iterate(
        self,
        service: Service,
        path: str,
        cls: type[T],
        params: Mapping[str, Any],
        page_size: int,
    ) -> AsyncIterator[T]:
        """Follow ``Link: rel="next"``; without it, step ``offset`` until ``X-Total-Count``.

        A next link is followed only below the service's base URL: the bearer token is
        never sent elsewhere, and a link that lost a proxy's path prefix is not used."""
        query = {**params, "limit": page_size, "offset": params.get("offset") or 0}
        url: str | None = None
        base = self.urls[service] + "/"
        while True:
            page = await self._page(service, path, cls, query, url=url)
            for item in page.items:
                yield item
            if not page.items:
                return
            if page.next_url and page.next_url.startswith(base):
                url = page.next_url
                continue
            offset = page.offset if page.offset is not None else int(query["offset"])
            offset += len(page.items)
            if page.total is not None and offset >= page.total:
                return
            if page.total is None and len(page.items) < page_size:
                return
            query["offset"], url = offset, None

    @staticmethod
    def _idempotency(key: str | None) -> dict[str, str]:
        return {"Idempotency-Key": key or str(uuid.uuid4())}

    # ------------------------------------------------------------------ auth

    def _adopt(self, session: Session) -> Session:
        self.tokens.update(session)
        if session.user is not None:
            self.user = session.user
        if self.on_session is not None:
            self.on_session(session)
        return session

    async def login(self, username: str, password: str, mfa_code: str | None = None) -> Session:
        """``POST /auth/login``; raises :class:`MfaRequiredError` when a code is needed."""
        body: dict[str, Any] = {"username": username, "password": password}
        if mfa_code:
            body["mfa_code"] = mfa_code
        reply = await exchange(
            self.http,
            "POST",
            self.urls["control_center"] + "/auth/login",
            headers=self._headers(False, None),
            body=body,
            is_login=True,
        )
        self.tokens.clear()
        return self._adopt(from_dict(Session, reply.data))

    async def refresh(self) -> Session:
        """``POST /auth/refresh`` with the refresh token (rotated) or the access token."""
        credential = self.tokens.refresh_credential()
        if credential is None:
            raise AuthenticationError("Session expired: log in again", status=401)
        reply = await exchange(
            self.http,
            "POST",
            self.urls["control_center"] + "/auth/refresh",
            headers=self._headers(False, None),
            body={"token": credential},
        )
        return self._adopt(from_dict(Session, reply.data))

    async def ensure_fresh_token(self) -> None:
        """Refresh once (even with concurrent callers) when the token is about to expire."""
        if not self.tokens.refresh_due(self.refresh_margin):
            return
        async with self._refresh_lock:
            if self.tokens.refresh_due(self.refresh_margin):
                await self.refresh()

    async def logout(self) -> str:
        data = await self._data("control_center", "POST", "/auth/logout")
        self.tokens.clear()
        return str(data)

    async def me(self) -> User:
        return from_dict(User, await self._data("control_center", "GET", "/auth/me"))

    async def mfa_enroll(self, password: str) -> MfaEnrollment:
        data = await self._data(
            "control_center", "POST", "/auth/mfa/enroll", body={"password": password}
        )
        enrollment = from_dict(MfaEnrollment, data)
        for key in ("otpauth_url", "uri", "provisioning_uri"):
            if not enrollment.otpauth_uri and key in enrollment.extra:
                enrollment.otpauth_uri = str(enrollment.extra[key])
        return enrollment

    async def mfa_verify(self, code: str) -> Any:
        return await self._data("control_center", "POST", "/auth/mfa/verify", body={"code": code})

    async def service_token(self, client_id: str, client_secret: str) -> ServiceToken:
        """Client-credentials grant (``POST /auth/token``) for service accounts."""
        data = await self._data(
            "control_center",
            "POST",
            "/auth/token",
            auth=False,
            body={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
            },
        )
        return from_dict(ServiceToken, data)

    async def introspect(self, token: str) -> Introspection:
        """``POST /auth/introspect`` (the client must hold a service token)."""
        data = await self._data("control_center", "POST", "/auth/introspect", body={"token": token})
        return from_dict(Introspection, data)

    async def rotate_signing_key(self) -> Any:
        """``POST /keys/rotate`` (admin): new signing key, old tokens stay valid."""
        return await self._data("control_center", "POST", "/keys/rotate")

    async def jwks(self) -> dict[str, Any]:
        reply = await self._call(
            "control_center", "GET", "/.well-known/jwks.json", auth=False, envelope=False
        )
        return dict(reply.data)

    # ------------------------------------------------------------------ users

    async def list_users(
        self,
        *,
        role: str | None = None,
        enabled: bool | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Page[User]:
        params = {"role": role, "enabled": enabled, "limit": limit, "offset": offset}
        return await self._page("control_center", "/users", User, params)

    def iter_users(
        self, *, role: str | None = None, enabled: bool | None = None, page_size: int = 100
    ) -> AsyncIterator[User]:
        return self._iterate(
            "control_center", "/users", User, {"role": role, "enabled": enabled}, page_size
        )

    async def create_user(
        self,
        username: str,
        email: str,
        password: str,
        roles: Iterable[str],
        enabled: bool = True,
    ) -> User:
        body = {
            "username": username,
            "email": email,
            "password": password,
            "roles": list(roles),
            "enabled": enabled,
        }
        return from_dict(User, await self._data("control_center", "POST", "/users", body=body))

    async def get_user(self, user_id: str) -> User:
        return from_dict(User, await self._data("control_center", "GET", f"/users/{user_id}"))

    async def update_user(self, user_id: str, **changes: Any) -> Any:
        """``PUT /users/{id}`` with e.g. ``email=``, ``roles=``, ``enabled=``, ``password=``."""
        body = {k: v for k, v in changes.items() if v is not None}
        return await self._data("control_center", "PUT", f"/users/{user_id}", body=body)

    async def delete_user(self, user_id: str) -> Any:
        return await self._data("control_center", "DELETE", f"/users/{user_id}")

    async def reset_user_mfa(self, user_id: str) -> Any:
        return await self._data("control_center", "DELETE", f"/users/{user_id}/mfa")

    async def unlock_user(self, user_id: str) -> Any:
        """Lift a temporary login lockout (admin)."""
        return await self._data("control_center", "POST", f"/users/{user_id}/unlock")

    # ------------------------------------------------------------------ policies

    async def list_policies(
        self, *, limit: int | None = None, offset: int | None = None
    ) -> Page[Policy]:
        params = {"limit": limit, "offset": offset}
        return await self._page("control_center", "/policies", Policy, params)

    def iter_policies(self, *, page_size: int = 100) -> AsyncIterator[Policy]:
        return self._iterate("control_center", "/policies", Policy, {}, page_size)

    async def create_policy(
        self,
        name: str,
        rules: list[Mapping[str, Any]],
        version: str = "1.0.0",
        **extra: Any,
    ) -> Policy:
        body = {"name": name, "version": version, "rules": [dict(r) for r in rules], **extra}
        return from_dict(Policy, await self._data("control_center", "POST", "/policies", body=body))

    async def get_policy(self, policy_id: str) -> Policy:
        return from_dict(
            Policy, await self._data("control_center", "GET", f"/policies/{policy_id}")
        )

    async def update_policy(self, policy_id: str, **changes: Any) -> Any:
        body = {k: v for k, v in changes.items() if v is not None}
        return await self._data("control_center", "PUT", f"/policies/{policy_id}", body=body)

    async def delete_policy(self, policy_id: str) -> Any:
        return await self._data("control_center", "DELETE", f"/policies/{policy_id}")

    async def evaluate_policy(
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
        data = await self._data("control_center", "POST", "/policies/evaluate", body=body)
        return from_dict(PolicyDecision, data)

    # ------------------------------------------------------------------ audit

    @staticmethod
    def _audit_params(
        user_id: str | None,
        action: str | None,
        resource: str | None,
        since: datetime | str | None,
        until: datetime | str | None,
    ) -> dict[str, Any]:
        return {
            "user_id": user_id,
            "action": action,
            "resource": resource,
            "from": _iso(since),
            "to": _iso(until),
        }

    async def audit_logs(
        self,
        *,
        user_id: str | None = None,
        action: str | None = None,
        resource: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Page[AuditLog]:
        """``GET /audit/logs``; ``since``/``until`` are the contract's ``from``/``to``."""
        params = {
            **self._audit_params(user_id, action, resource, since, until),
            "limit": limit,
            "offset": offset,
        }
        return await self._page("control_center", "/audit/logs", AuditLog, params)

    def iter_audit_logs(
        self,
        *,
        user_id: str | None = None,
        action: str | None = None,
        resource: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[AuditLog]:
        params = self._audit_params(user_id, action, resource, since, until)
        return self._iterate("control_center", "/audit/logs", AuditLog, params, page_size)

    async def record_audit_event(self, event: Mapping[str, Any]) -> Any:
        """``POST /audit/events`` (service token only)."""
        return await self._data("control_center", "POST", "/audit/events", body=dict(event))

    # ------------------------------------------------------------------ operational

    async def health(self, service: Service = "orchestrator") -> Any:
        return await self._data(service, "GET", "/health", auth=False)

    async def ready(self, service: Service = "orchestrator") -> Any:
        """``GET /ready``: readiness (dependencies reachable)."""
        return await self._data(service, "GET", "/ready", auth=False)

    async def metrics_text(self, service: Service = "orchestrator") -> str:
        reply = await self._call(service, "GET", "/metrics", auth=False, envelope=False)
        return str(reply.data)

    async def openapi(self, service: Service = "orchestrator") -> dict[str, Any]:
        reply = await self._call(service, "GET", "/openapi.json", auth=False, envelope=False)
        return dict(reply.data)

    # ------------------------------------------------------------------ tasks

    async def list_tasks(
        self,
        *,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Page[Task]:
        params = {"status": status, "limit": limit, "offset": offset}
        return await self._page("orchestrator", "/tasks", Task, params)

    def iter_tasks(self, *, status: str | None = None, page_size: int = 100) -> AsyncIterator[Task]:
        return self._iterate("orchestrator", "/tasks", Task, {"status": status}, page_size)

    async def get_task(self, task_id: str) -> Task:
        return from_dict(Task, await self._data("orchestrator", "GET", f"/tasks/{task_id}"))

    async def cancel_task(self, task_id: str) -> Any:
        return await self._data("orchestrator", "POST", f"/tasks/{task_id}/cancel")

    async def task_attempts(self, task_id: str) -> list[TaskAttempt]:
        data = await self._data("orchestrator", "GET", f"/tasks/{task_id}/attempts")
        return from_list(TaskAttempt, data)

    # ------------------------------------------------------------------ workflows

    async def _submit(self, path: str, body: Mapping[str, Any], key: str | None) -> str:
        data = await self._data(
            "orchestrator", "POST", path, body=dict(body), headers=self._idempotency(key)
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
        body = {
            "operation": operation,
            "cluster_type": cluster_type,
            "infra": infra,
            "settings": settings,
            "check_mode": check_mode,
            "wait": wait,
        }
        return await self._submit("/workflows/cluster/create", body, idempotency_key)

    # ------------------------------------------------------------------ batches

    async def execute_batch(
        self, batch: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Batch:
        """``POST /batch/execute`` with the contract's batch document."""
        data = await self._data(
            "orchestrator",
            "POST",
            "/batch/execute",
            body=dict(batch),
            headers=self._idempotency(idempotency_key),
        )
        return from_dict(Batch, data)

    async def plan_batch(self, batch: Mapping[str, Any]) -> BatchPlan:
        data = await self._data("orchestrator", "POST", "/batch/plan", body=dict(batch))
        return from_dict(BatchPlan, data)

    async def list_batches(
        self,
        *,
        limit: int | None = None,
        offset: int | None = None,
        status: str | None = None,
    ) -> Page[Batch]:
        params = {"limit": limit, "offset": offset, "status": status}
        return await self._page("orchestrator", "/batch/operations", Batch, params)

    def iter_batches(self, *, page_size: int = 100) -> AsyncIterator[Batch]:
        return self._iterate("orchestrator", "/batch/operations", Batch, {}, page_size)

    async def get_batch(self, batch_id: str) -> Batch:
        data = await self._data("orchestrator", "GET", f"/batch/operations/{batch_id}")
        return from_dict(Batch, data)

    async def cancel_batch(self, batch_id: str) -> Any:
        return await self._data("orchestrator", "POST", f"/batch/operations/{batch_id}/cancel")

    # ------------------------------------------------------------------ state

    async def workflow_progress(self, workflow_id: str) -> WorkflowProgress:
        data = await self._data("orchestrator", "GET", f"/state/workflows/{workflow_id}/progress")
        return from_dict(WorkflowProgress, data)

    async def workflow_snapshots(self, workflow_id: str) -> list[Snapshot]:
        data = await self._data("orchestrator", "GET", f"/state/workflows/{workflow_id}/snapshots")
        return from_list(Snapshot, data)

    async def system_metrics(self) -> SystemMetrics:
        data = await self._data("orchestrator", "GET", "/state/system/metrics")
        return from_dict(SystemMetrics, data)

    async def system_health(self) -> SystemHealth:
        data = await self._data("orchestrator", "GET", "/state/system/health")
        return from_dict(SystemHealth, data)

    async def state_statistics(self) -> StateStatistics:
        data = await self._data("orchestrator", "GET", "/state/statistics")
        return from_dict(StateStatistics, data)

    # ------------------------------------------------------------------ rollback

    async def create_checkpoint(self, name: str, description: str = "") -> str:
        body = {"name": name, "description": description}
        return str(await self._data("orchestrator", "POST", "/rollback/checkpoints", body=body))

    async def list_checkpoints(
        self, *, limit: int | None = None, offset: int | None = None
    ) -> Page[Checkpoint]:
        params = {"limit": limit, "offset": offset}
        return await self._page("orchestrator", "/rollback/checkpoints", Checkpoint, params)

    def iter_checkpoints(self, *, page_size: int = 100) -> AsyncIterator[Checkpoint]:
        return self._iterate("orchestrator", "/rollback/checkpoints", Checkpoint, {}, page_size)

    async def get_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        data = await self._data("orchestrator", "GET", f"/rollback/checkpoints/{checkpoint_id}")
        return from_dict(Checkpoint, data)

    async def rollback(
        self, *, checkpoint_id: str | None = None, operation_ids: Iterable[str] | None = None
    ) -> RollbackResult:
        """``POST /rollback/execute``: to a checkpoint, or of the listed operations."""
        if (checkpoint_id is None) == (operation_ids is None):
            raise ValueError("give exactly one of checkpoint_id and operation_ids")
        body: dict[str, Any] = (
            {"checkpoint_id": checkpoint_id}
            if checkpoint_id is not None
            else {"operation_ids": list(operation_ids or [])}
        )
        data = await self._data("orchestrator", "POST", "/rollback/execute", body=body)
        return from_dict(RollbackResult, data)

    async def restore_checkpoint(self, checkpoint_id: str) -> str:
        return str(await self._data("orchestrator", "POST", f"/rollback/restore/{checkpoint_id}"))

    async def rollback_statistics(self) -> RollbackStatistics:
        data = await self._data("orchestrator", "GET", "/rollback/statistics")
        return from_dict(RollbackStatistics, data)

    async def list_rollback_operations(
        self, *, limit: int | None = None, offset: int | None = None
    ) -> Page[LedgerOperation]:
        params = {"limit": limit, "offset": offset}
        return await self._page("orchestrator", "/rollback/operations", LedgerOperation, params)

    # ------------------------------------------------------------------ webhooks

    async def list_webhook_deliveries(
        self, *, limit: int | None = None, offset: int | None = None, **filters: Any
    ) -> Page[WebhookDelivery]:
        params = {**filters, "limit": limit, "offset": offset}
        return await self._page("orchestrator", "/webhooks/deliveries", WebhookDelivery, params)

    async def get_webhook_delivery(self, delivery_id: str) -> WebhookDelivery:
        data = await self._data("orchestrator", "GET", f"/webhooks/deliveries/{delivery_id}")
        return from_dict(WebhookDelivery, data)

    async def redeliver_webhook(self, delivery_id: str) -> Any:
        return await self._data(
            "orchestrator", "POST", f"/webhooks/deliveries/{delivery_id}/redeliver"
        )

    # ------------------------------------------------------------------ events

    def events(
        self,
        *,
        since: str | None = None,
        event_types: Iterable[str] | None = None,
        reconnect: bool = True,
        max_reconnects: int | None = None,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
    ) -> EventStream:
        """An async iterator over ``/ws`` events that reconnects with ``since``."""
        return EventStream(
            self,
            since=since,
            event_types=list(event_types or []),
            reconnect=reconnect,
            max_reconnects=max_reconnects,
            backoff=backoff,
            max_backoff=max_backoff,
        )
