"""Typed results of the SDK (dataclasses mirroring the contract's JSON objects).

Every model keeps keys it does not know in ``extra``, so a newer server never breaks
an older client. Status strings are kept exactly as the server sends them
("Completed" in documents, "completed" in some events)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


def is_terminal(status: str | None) -> bool:
    return (status or "").lower() in TERMINAL_STATUSES


@dataclass(slots=True)
class User:
    id: str = ""
    username: str = ""
    email: str | None = None
    roles: list[str] = field(default_factory=list)
    enabled: bool | None = None
    mfa_enabled: bool | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_login: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Session:
    """Tokens of a logged-in user (``/auth/login`` and ``/auth/refresh``)."""

    token: str = ""
    expires_at: datetime | None = None
    refresh_token: str | None = None
    refresh_expires_at: datetime | None = None
    user: User | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ServiceToken:
    access_token: str = ""
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int | None = None
    expires_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Introspection:
    active: bool = False
    sub: str | None = None
    username: str | None = None
    roles: list[str] = field(default_factory=list)
    exp: int | None = None
    typ: str | None = None
    jti: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class MfaEnrollment:
    secret: str = ""
    otpauth_uri: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class PolicyRule:
    effect: str = "Allow"
    resource: str = ""
    action: list[str] = field(default_factory=list)
    condition: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Policy:
    id: str = ""
    name: str = ""
    version: str | None = None
    description: str | None = None
    rules: list[PolicyRule] = field(default_factory=list)
    enabled: bool | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class PolicyDecision:
    """Answer of ``POST /policies/evaluate``; the explain fields are kept as sent."""

    decision: str | None = None
    allowed: bool | None = None
    reason: str | None = None
    matched_rules: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_allowed(self) -> bool:
        if self.allowed is not None:
            return bool(self.allowed)
        return (self.decision or "").lower() in {"allow", "allowed", "permit"}


@dataclass(slots=True)
class AuditLog:
    id: str = ""
    timestamp: datetime | None = None
    user_id: str | None = None
    action: str = ""
    resource: str = ""
    result: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Task:
    id: str = ""
    name: str = ""
    command: str = ""
    args: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    status: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    output: str | None = None
    error: str | None = None
    progress: float | None = None
    current_step: str | None = None
    attempts: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return is_terminal(self.status)


@dataclass(slots=True)
class TaskAttempt:
    id: str = ""
    task_id: str | None = None
    attempt: int | None = None
    worker_id: str | None = None
    status: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished_at(self) -> datetime | None:
        """The name earlier versions used for ``ended_at`` (the served document's)."""
        return self.ended_at


@dataclass(slots=True)
class BatchOperation:
    id: str = ""
    status: str = ""
    progress: float = 0.0
    type: str | None = None
    results: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Batch:
    batch_id: str = ""
    name: str | None = None
    status: str = ""
    created_at: datetime | None = None
    operations: list[BatchOperation] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return is_terminal(self.status)

    @property
    def progress(self) -> float:
        if not self.operations:
            return 100.0 if self.finished else 0.0
        return sum(op.progress for op in self.operations) / len(self.operations)


@dataclass(slots=True)
class BatchPlan:
    """``POST /batch/plan``: validation result plus waves; kept close to the wire."""

    waves: list[Any] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class WorkflowProgress:
    workflow_id: str = ""
    progress: float = 0.0
    current_step: str | None = None
    total_steps: int | None = None
    completed_steps: int | None = None
    estimated_time_remaining: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Snapshot:
    snapshot_id: str = ""
    timestamp: datetime | None = None
    state: str | None = None
    details: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class SystemMetrics:
    total_workflows: int = 0
    active_workflows: int = 0
    completed_workflows: int = 0
    failed_workflows: int = 0
    system_load: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class SystemHealth:
    overall_status: str = ""
    components: dict[str, Any] = field(default_factory=dict)
    last_check: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class StateStatistics:
    total_workflows: int = 0
    active_snapshots: int = 0
    storage_usage: str | None = None
    average_workflow_duration: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Checkpoint:
    id: str = ""
    name: str = ""
    description: str | None = None
    created_at: datetime | None = None
    size: str | None = None
    operations_count: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RollbackResult:
    rollback_id: str = ""
    success: bool = False
    operations_executed: int = 0
    operations_failed: int = 0
    duration: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RollbackStatistics:
    total_checkpoints: int = 0
    total_rollbacks: int = 0
    success_rate: float = 0.0
    average_rollback_time: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class LedgerOperation:
    """One applied operation of the rollback ledger (``GET /rollback/operations``)."""

    id: str = ""
    batch_id: str | None = None
    operation_id: str | None = None
    task_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class WebhookDeliveryAttempt:
    attempt: int = 0
    status: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: float | None = None
    status_code: int | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class WebhookDelivery:
    id: str = ""
    event: str | None = None
    event_id: str | None = None
    endpoint_id: str | None = None
    url: str | None = None
    status: str | None = None
    attempts: int | None = None
    max_attempts: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    attempt_log: list[WebhookDeliveryAttempt] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Event:
    """One ``/ws`` event in the contract's format."""

    id: str = ""
    event_type: str = ""
    timestamp: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        """A field from ``data``, falling back to ``metadata``."""
        if key in self.data:
            return self.data[key]
        return self.metadata.get(key)


@dataclass(slots=True)
class Page(Generic[T]):
    """One page of a list endpoint with the pagination headers."""

    items: list[T]
    total: int | None
    limit: int | None
    offset: int | None
    next_url: str | None = None
