"""``ProvisioningClient``: async SDK for the orchestrator and the control center.

Endpoints are grouped in namespaces (``client.tasks.get(...)``,
``client.batches.execute(...)``, ``client.users.create(...)``, see
:mod:`provisioning_client.resources`). The flat methods of the README and of earlier
versions (``client.get_task(...)``, ``client.execute_batch(...)``) are kept: each one
forwards to its namespace with the same signature."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType

import aiohttp

from ._delegate import delegate
from .auth import TokenState
from .events import EventStream
from .models import Session, User
from .resources import (
    AuditAPI,
    AuthAPI,
    BatchesAPI,
    PoliciesAPI,
    RollbackAPI,
    StateAPI,
    SystemAPI,
    TasksAPI,
    UsersAPI,
    WebhooksAPI,
    WorkflowsAPI,
)
from .transport import (
    DEFAULT_CONTROL_CENTER_URL,
    DEFAULT_ORCHESTRATOR_URL,
    Backoff,
    Service,
    Transport,
)

__all__ = [
    "DEFAULT_CONTROL_CENTER_URL",
    "DEFAULT_ORCHESTRATOR_URL",
    "ProvisioningClient",
    "Service",
]


class ProvisioningClient:
    """Async client for both services.

    Use as ``async with ProvisioningClient(...) as client``. Authenticate with
    :meth:`login` (MFA code optional) or pass an existing ``token``. The access
    token is refreshed automatically shortly before it expires; ``on_session`` is
    called with every new :class:`Session` so callers can persist it. ``retries``
    (default 0) repeats idempotent requests that met an unreachable service, a 503
    or a 429, with exponential backoff."""

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
        retries: int = 0,
        backoff: Backoff | None = None,
    ) -> None:
        self.transport = Transport(
            orchestrator_url,
            control_center_url,
            tokens=TokenState(
                token=token,
                expires_at=expires_at,
                refresh_token=refresh_token,
                refresh_expires_at=refresh_expires_at,
            ),
            timeout=timeout,
            refresh_margin=refresh_margin,
            api_version=api_version,
            on_session=on_session,
            session=session,
            retries=retries,
            backoff=backoff,
        )
        self.auth = AuthAPI(self.transport)
        self.users = UsersAPI(self.transport)
        self.policies = PoliciesAPI(self.transport)
        self.audit = AuditAPI(self.transport)
        self.system = SystemAPI(self.transport)
        self.tasks = TasksAPI(self.transport)
        self.workflows = WorkflowsAPI(self.transport)
        self.batches = BatchesAPI(self.transport)
        self.state = StateAPI(self.transport)
        self.rollback = RollbackAPI(self.transport)  # also callable: rollback(checkpoint_id=)
        self.webhooks = WebhooksAPI(self.transport)

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
        await self.transport.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        return self.transport.http

    # ------------------------------------------------------------------ credentials

    @property
    def urls(self) -> dict[Service, str]:
        return self.transport.urls

    @property
    def tokens(self) -> TokenState:
        return self.transport.tokens

    @property
    def token(self) -> str | None:
        return self.transport.tokens.token

    @property
    def user(self) -> User | None:
        """The user of the last login or refresh that named one."""
        return self.transport.user

    @property
    def on_session(self) -> Callable[[Session], None] | None:
        return self.transport.on_session

    @on_session.setter
    def on_session(self, callback: Callable[[Session], None] | None) -> None:
        self.transport.on_session = callback

    def use_token(self, token: str, expires_at: datetime | None = None) -> None:
        """Authenticate with a token obtained elsewhere (e.g. a service token)."""
        self.transport.use_token(token, expires_at)

    async def ensure_fresh_token(self) -> None:
        """Refresh once (even with concurrent callers) when the token is about to expire."""
        await self.transport.ensure_fresh_token()

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
            self.transport,
            since=since,
            event_types=list(event_types or []),
            reconnect=reconnect,
            max_reconnects=max_reconnects,
            backoff=backoff,
            max_backoff=max_backoff,
        )

    # ------------------------------------------------------------------ flat methods
    # Each forwards to its namespace with the same signature (see ``_delegate``).

    login = delegate("auth", AuthAPI.login)
    refresh = delegate("auth", AuthAPI.refresh)
    logout = delegate("auth", AuthAPI.logout)
    me = delegate("auth", AuthAPI.me)
    mfa_enroll = delegate("auth", AuthAPI.mfa_enroll)
    mfa_verify = delegate("auth", AuthAPI.mfa_verify)
    service_token = delegate("auth", AuthAPI.service_token)
    introspect = delegate("auth", AuthAPI.introspect)
    rotate_signing_key = delegate("auth", AuthAPI.rotate_signing_key)
    jwks = delegate("auth", AuthAPI.jwks)

    list_users = delegate("users", UsersAPI.list)
    iter_users = delegate("users", UsersAPI.iter)
    create_user = delegate("users", UsersAPI.create)
    get_user = delegate("users", UsersAPI.get)
    update_user = delegate("users", UsersAPI.update)
    delete_user = delegate("users", UsersAPI.delete)
    reset_user_mfa = delegate("users", UsersAPI.reset_mfa)
    unlock_user = delegate("users", UsersAPI.unlock)

    list_policies = delegate("policies", PoliciesAPI.list)
    iter_policies = delegate("policies", PoliciesAPI.iter)
    create_policy = delegate("policies", PoliciesAPI.create)
    get_policy = delegate("policies", PoliciesAPI.get)
    update_policy = delegate("policies", PoliciesAPI.update)
    delete_policy = delegate("policies", PoliciesAPI.delete)
    evaluate_policy = delegate("policies", PoliciesAPI.evaluate)

    audit_logs = delegate("audit", AuditAPI.logs)
    iter_audit_logs = delegate("audit", AuditAPI.iter_logs)
    record_audit_event = delegate("audit", AuditAPI.record_event)
    verify_audit = delegate("audit", AuditAPI.verify)
    export_audit = delegate("audit", AuditAPI.export)
    export_audit_lines = delegate("audit", AuditAPI.export_lines)
    verify_audit_export = delegate("audit", AuditAPI.verify_export)

    health = delegate("system", SystemAPI.health)
    ready = delegate("system", SystemAPI.ready)
    metrics_text = delegate("system", SystemAPI.metrics_text)
    openapi = delegate("system", SystemAPI.openapi)

    list_tasks = delegate("tasks", TasksAPI.list)
    iter_tasks = delegate("tasks", TasksAPI.iter)
    get_task = delegate("tasks", TasksAPI.get)
    cancel_task = delegate("tasks", TasksAPI.cancel)
    task_attempts = delegate("tasks", TasksAPI.attempts)

    create_servers = delegate("workflows", WorkflowsAPI.create_servers)
    create_taskserv = delegate("workflows", WorkflowsAPI.create_taskserv)
    create_cluster = delegate("workflows", WorkflowsAPI.create_cluster)

    execute_batch = delegate("batches", BatchesAPI.execute)
    plan_batch = delegate("batches", BatchesAPI.plan)
    list_batches = delegate("batches", BatchesAPI.list)
    iter_batches = delegate("batches", BatchesAPI.iter)
    get_batch = delegate("batches", BatchesAPI.get)
    cancel_batch = delegate("batches", BatchesAPI.cancel)

    workflow_progress = delegate("state", StateAPI.progress)
    workflow_snapshots = delegate("state", StateAPI.snapshots)
    system_metrics = delegate("state", StateAPI.system_metrics)
    system_health = delegate("state", StateAPI.system_health)
    state_statistics = delegate("state", StateAPI.statistics)

    # ``rollback(...)`` itself is the callable ``client.rollback`` namespace.
    create_checkpoint = delegate("rollback", RollbackAPI.create_checkpoint)
    list_checkpoints = delegate("rollback", RollbackAPI.list_checkpoints)
    iter_checkpoints = delegate("rollback", RollbackAPI.iter_checkpoints)
    get_checkpoint = delegate("rollback", RollbackAPI.get_checkpoint)
    restore_checkpoint = delegate("rollback", RollbackAPI.restore)
    rollback_statistics = delegate("rollback", RollbackAPI.statistics)
    list_rollback_operations = delegate("rollback", RollbackAPI.list_operations)

    list_webhook_deliveries = delegate("webhooks", WebhooksAPI.list_deliveries)
    get_webhook_delivery = delegate("webhooks", WebhooksAPI.get_delivery)
    redeliver_webhook = delegate("webhooks", WebhooksAPI.redeliver)
