"""``SyncProvisioningClient``: the async client driven by a private event loop.

It mirrors :class:`ProvisioningClient` namespace by namespace (``client.tasks.get``,
``client.batches.execute``...) and keeps the same flat methods; every method takes
the same arguments and returns its result directly, and async iterators (``iter_*``,
``events``) become plain iterators. The wrappers are built from the async methods
themselves (:func:`_blocking`, :func:`_iterating`), so their signatures cannot
drift."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import datetime
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import aiohttp

from ._delegate import delegate
from .auth import TokenState
from .client import ProvisioningClient
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
)

P = ParamSpec("P")
R = TypeVar("R")
A = TypeVar("A")


async def _next(ait: AsyncIterator[R]) -> R:
    return await ait.__anext__()


class _Loop:
    """The private event loop every call of one sync client runs on."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        return self.runner.run(coro)

    def iterate(self, ait: AsyncIterator[R]) -> Iterator[R]:
        try:
            while True:
                try:
                    yield self.runner.run(_next(ait))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(ait, "aclose", None)
            if aclose is not None:
                self.runner.run(aclose())

    def close(self) -> None:
        self.runner.close()


class _Sync(Generic[A]):
    """A blocking view of one async object (a namespace, or the client itself)."""

    def __init__(self, api: A, loop: _Loop) -> None:
        self._api = api
        self._loop = loop


def _blocking(
    method: Callable[Concatenate[A, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[_Sync[A], P], R]:
    """The coroutine method ``method``, run to completion on the client's loop."""

    @functools.wraps(method)
    def call(self: _Sync[A], /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._loop.run(method(self._api, *args, **kwargs))

    return call


def _iterating(
    method: Callable[Concatenate[A, P], AsyncIterator[R]],
) -> Callable[Concatenate[_Sync[A], P], Iterator[R]]:
    """The async-iterator method ``method`` as a plain iterator."""

    @functools.wraps(method)
    def call(self: _Sync[A], /, *args: P.args, **kwargs: P.kwargs) -> Iterator[R]:
        return self._loop.iterate(method(self._api, *args, **kwargs))

    return call


class SyncAuthAPI(_Sync[AuthAPI]):
    login = _blocking(AuthAPI.login)
    refresh = _blocking(AuthAPI.refresh)
    logout = _blocking(AuthAPI.logout)
    me = _blocking(AuthAPI.me)
    mfa_enroll = _blocking(AuthAPI.mfa_enroll)
    mfa_verify = _blocking(AuthAPI.mfa_verify)
    service_token = _blocking(AuthAPI.service_token)
    introspect = _blocking(AuthAPI.introspect)
    rotate_signing_key = _blocking(AuthAPI.rotate_signing_key)
    jwks = _blocking(AuthAPI.jwks)


class SyncUsersAPI(_Sync[UsersAPI]):
    list = _blocking(UsersAPI.list)
    iter = _iterating(UsersAPI.iter)
    create = _blocking(UsersAPI.create)
    get = _blocking(UsersAPI.get)
    update = _blocking(UsersAPI.update)
    delete = _blocking(UsersAPI.delete)
    reset_mfa = _blocking(UsersAPI.reset_mfa)
    unlock = _blocking(UsersAPI.unlock)


class SyncPoliciesAPI(_Sync[PoliciesAPI]):
    list = _blocking(PoliciesAPI.list)
    iter = _iterating(PoliciesAPI.iter)
    create = _blocking(PoliciesAPI.create)
    get = _blocking(PoliciesAPI.get)
    update = _blocking(PoliciesAPI.update)
    delete = _blocking(PoliciesAPI.delete)
    evaluate = _blocking(PoliciesAPI.evaluate)


class SyncAuditAPI(_Sync[AuditAPI]):
    logs = _blocking(AuditAPI.logs)
    iter_logs = _iterating(AuditAPI.iter_logs)
    record_event = _blocking(AuditAPI.record_event)
    verify = _blocking(AuditAPI.verify)
    export = _iterating(AuditAPI.export)
    export_lines = _iterating(AuditAPI.export_lines)
    verify_export = _blocking(AuditAPI.verify_export)


class SyncSystemAPI(_Sync[SystemAPI]):
    health = _blocking(SystemAPI.health)
    ready = _blocking(SystemAPI.ready)
    metrics_text = _blocking(SystemAPI.metrics_text)
    openapi = _blocking(SystemAPI.openapi)


class SyncTasksAPI(_Sync[TasksAPI]):
    list = _blocking(TasksAPI.list)
    iter = _iterating(TasksAPI.iter)
    get = _blocking(TasksAPI.get)
    cancel = _blocking(TasksAPI.cancel)
    attempts = _blocking(TasksAPI.attempts)


class SyncWorkflowsAPI(_Sync[WorkflowsAPI]):
    create_servers = _blocking(WorkflowsAPI.create_servers)
    create_server = create_servers
    create_taskserv = _blocking(WorkflowsAPI.create_taskserv)
    create_cluster = _blocking(WorkflowsAPI.create_cluster)


class SyncBatchesAPI(_Sync[BatchesAPI]):
    execute = _blocking(BatchesAPI.execute)
    plan = _blocking(BatchesAPI.plan)
    list = _blocking(BatchesAPI.list)
    iter = _iterating(BatchesAPI.iter)
    get = _blocking(BatchesAPI.get)
    cancel = _blocking(BatchesAPI.cancel)
    resume = _blocking(BatchesAPI.resume)
    approve = _blocking(BatchesAPI.approve)
    reject = _blocking(BatchesAPI.reject)


class SyncStateAPI(_Sync[StateAPI]):
    progress = _blocking(StateAPI.progress)
    snapshots = _blocking(StateAPI.snapshots)
    system_metrics = _blocking(StateAPI.system_metrics)
    system_health = _blocking(StateAPI.system_health)
    statistics = _blocking(StateAPI.statistics)


class SyncRollbackAPI(_Sync[RollbackAPI]):
    create_checkpoint = _blocking(RollbackAPI.create_checkpoint)
    list_checkpoints = _blocking(RollbackAPI.list_checkpoints)
    iter_checkpoints = _iterating(RollbackAPI.iter_checkpoints)
    get_checkpoint = _blocking(RollbackAPI.get_checkpoint)
    execute = _blocking(RollbackAPI.execute)
    __call__ = execute
    restore = _blocking(RollbackAPI.restore)
    statistics = _blocking(RollbackAPI.statistics)
    list_operations = _blocking(RollbackAPI.list_operations)


class SyncWebhooksAPI(_Sync[WebhooksAPI]):
    list_deliveries = _blocking(WebhooksAPI.list_deliveries)
    get_delivery = _blocking(WebhooksAPI.get_delivery)
    redeliver = _blocking(WebhooksAPI.redeliver)


class SyncProvisioningClient(_Sync[ProvisioningClient]):
    """Takes the arguments of :class:`ProvisioningClient`; use as a context manager
    (``with SyncProvisioningClient(...) as client``) or call :meth:`close`."""

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
        loop = _Loop()
        make = functools.partial(
            ProvisioningClient,
            orchestrator_url,
            control_center_url,
            token=token,
            expires_at=expires_at,
            refresh_token=refresh_token,
            refresh_expires_at=refresh_expires_at,
            timeout=timeout,
            refresh_margin=refresh_margin,
            api_version=api_version,
            on_session=on_session,
            session=session,
            retries=retries,
            backoff=backoff,
        )
        # Created on the loop that runs every call (aiohttp binds to it).
        super().__init__(loop.run(self._make(make)), loop)
        api = self._api
        self.auth = SyncAuthAPI(api.auth, loop)
        self.users = SyncUsersAPI(api.users, loop)
        self.policies = SyncPoliciesAPI(api.policies, loop)
        self.audit = SyncAuditAPI(api.audit, loop)
        self.system = SyncSystemAPI(api.system, loop)
        self.tasks = SyncTasksAPI(api.tasks, loop)
        self.workflows = SyncWorkflowsAPI(api.workflows, loop)
        self.batches = SyncBatchesAPI(api.batches, loop)
        self.state = SyncStateAPI(api.state, loop)
        self.rollback = SyncRollbackAPI(api.rollback, loop)  # also callable, as in async
        self.webhooks = SyncWebhooksAPI(api.webhooks, loop)

    @staticmethod
    async def _make(make: Callable[[], ProvisioningClient]) -> ProvisioningClient:
        return make()

    @property
    def client(self) -> ProvisioningClient:
        """The async client underneath (its coroutines run only on this client's loop)."""
        return self._api

    def __enter__(self) -> SyncProvisioningClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._loop.run(self._api.close())
        finally:
            self._loop.close()

    @property
    def urls(self) -> dict[Service, str]:
        return self._api.urls

    @property
    def tokens(self) -> TokenState:
        return self._api.tokens

    @property
    def token(self) -> str | None:
        return self._api.token

    @property
    def user(self) -> User | None:
        return self._api.user

    @property
    def on_session(self) -> Callable[[Session], None] | None:
        return self._api.on_session

    @on_session.setter
    def on_session(self, callback: Callable[[Session], None] | None) -> None:
        self._api.on_session = callback

    def use_token(self, token: str, expires_at: datetime | None = None) -> None:
        self._api.use_token(token, expires_at)

    ensure_fresh_token = _blocking(ProvisioningClient.ensure_fresh_token)
    events = _iterating(ProvisioningClient.events)

    # ------------------------------------------------------------------ flat methods

    login = delegate("auth", SyncAuthAPI.login)
    refresh = delegate("auth", SyncAuthAPI.refresh)
    logout = delegate("auth", SyncAuthAPI.logout)
    me = delegate("auth", SyncAuthAPI.me)
    mfa_enroll = delegate("auth", SyncAuthAPI.mfa_enroll)
    mfa_verify = delegate("auth", SyncAuthAPI.mfa_verify)
    service_token = delegate("auth", SyncAuthAPI.service_token)
    introspect = delegate("auth", SyncAuthAPI.introspect)
    rotate_signing_key = delegate("auth", SyncAuthAPI.rotate_signing_key)
    jwks = delegate("auth", SyncAuthAPI.jwks)

    list_users = delegate("users", SyncUsersAPI.list)
    iter_users = delegate("users", SyncUsersAPI.iter)
    create_user = delegate("users", SyncUsersAPI.create)
    get_user = delegate("users", SyncUsersAPI.get)
    update_user = delegate("users", SyncUsersAPI.update)
    delete_user = delegate("users", SyncUsersAPI.delete)
    reset_user_mfa = delegate("users", SyncUsersAPI.reset_mfa)
    unlock_user = delegate("users", SyncUsersAPI.unlock)

    list_policies = delegate("policies", SyncPoliciesAPI.list)
    iter_policies = delegate("policies", SyncPoliciesAPI.iter)
    create_policy = delegate("policies", SyncPoliciesAPI.create)
    get_policy = delegate("policies", SyncPoliciesAPI.get)
    update_policy = delegate("policies", SyncPoliciesAPI.update)
    delete_policy = delegate("policies", SyncPoliciesAPI.delete)
    evaluate_policy = delegate("policies", SyncPoliciesAPI.evaluate)

    audit_logs = delegate("audit", SyncAuditAPI.logs)
    iter_audit_logs = delegate("audit", SyncAuditAPI.iter_logs)
    record_audit_event = delegate("audit", SyncAuditAPI.record_event)
    verify_audit = delegate("audit", SyncAuditAPI.verify)
    export_audit = delegate("audit", SyncAuditAPI.export)
    export_audit_lines = delegate("audit", SyncAuditAPI.export_lines)
    verify_audit_export = delegate("audit", SyncAuditAPI.verify_export)

    health = delegate("system", SyncSystemAPI.health)
    ready = delegate("system", SyncSystemAPI.ready)
    metrics_text = delegate("system", SyncSystemAPI.metrics_text)
    openapi = delegate("system", SyncSystemAPI.openapi)

    list_tasks = delegate("tasks", SyncTasksAPI.list)
    iter_tasks = delegate("tasks", SyncTasksAPI.iter)
    get_task = delegate("tasks", SyncTasksAPI.get)
    cancel_task = delegate("tasks", SyncTasksAPI.cancel)
    task_attempts = delegate("tasks", SyncTasksAPI.attempts)

    create_servers = delegate("workflows", SyncWorkflowsAPI.create_servers)
    create_taskserv = delegate("workflows", SyncWorkflowsAPI.create_taskserv)
    create_cluster = delegate("workflows", SyncWorkflowsAPI.create_cluster)

    execute_batch = delegate("batches", SyncBatchesAPI.execute)
    plan_batch = delegate("batches", SyncBatchesAPI.plan)
    list_batches = delegate("batches", SyncBatchesAPI.list)
    iter_batches = delegate("batches", SyncBatchesAPI.iter)
    get_batch = delegate("batches", SyncBatchesAPI.get)
    cancel_batch = delegate("batches", SyncBatchesAPI.cancel)

    workflow_progress = delegate("state", SyncStateAPI.progress)
    workflow_snapshots = delegate("state", SyncStateAPI.snapshots)
    system_metrics = delegate("state", SyncStateAPI.system_metrics)
    system_health = delegate("state", SyncStateAPI.system_health)
    state_statistics = delegate("state", SyncStateAPI.statistics)

    create_checkpoint = delegate("rollback", SyncRollbackAPI.create_checkpoint)
    list_checkpoints = delegate("rollback", SyncRollbackAPI.list_checkpoints)
    iter_checkpoints = delegate("rollback", SyncRollbackAPI.iter_checkpoints)
    get_checkpoint = delegate("rollback", SyncRollbackAPI.get_checkpoint)
    restore_checkpoint = delegate("rollback", SyncRollbackAPI.restore)
    rollback_statistics = delegate("rollback", SyncRollbackAPI.statistics)
    list_rollback_operations = delegate("rollback", SyncRollbackAPI.list_operations)

    list_webhook_deliveries = delegate("webhooks", SyncWebhooksAPI.list_deliveries)
    get_webhook_delivery = delegate("webhooks", SyncWebhooksAPI.get_delivery)
    redeliver_webhook = delegate("webhooks", SyncWebhooksAPI.redeliver)
