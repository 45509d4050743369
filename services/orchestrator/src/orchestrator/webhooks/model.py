"""Which orchestrator events become which webhook events (pure rules, no I/O).

=========================================  ====================
orchestrator event (``event_type``)        webhook ``event``
=========================================  ====================
``TaskStatusChanged``, status completed    ``task.completed``
``TaskStatusChanged``, status failed       ``task.failed``
``BatchStatusChanged``, status completed   ``batch.completed``
``BatchStatusChanged``, status failed      ``batch.failed``
``BatchCompleted`` / ``BatchFailed``       ``batch.completed`` / ``batch.failed``
``RollbackCompleted``                      ``rollback.completed``
``RollbackStatusChanged``, completed       ``rollback.completed``
``ApprovalRequested``                      ``approval.requested``
``ApprovalDecided``                        ``approval.decided``
=========================================  ====================

The status is read from ``data.status`` (any case)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from orchestrator.engine.model import COMPLETED, FAILED, wire_status
from orchestrator.event_types import EventType
from provisioning_common import outbox


class DeliveryStatus(StrEnum):
    """A webhook delivery's status: the status of its item in the outbox
    (``provisioning_common.outbox``, whose values these are)."""

    PENDING = outbox.PENDING
    DELIVERING = outbox.DELIVERING
    SUCCEEDED = outbox.SUCCEEDED
    FAILED = outbox.FAILED


SOURCE_EVENT_TYPES = (
    EventType.TASK_STATUS_CHANGED,
    EventType.BATCH_STATUS_CHANGED,
    EventType.BATCH_COMPLETED,
    EventType.BATCH_FAILED,
    EventType.ROLLBACK_COMPLETED,
    EventType.ROLLBACK_STATUS_CHANGED,
    EventType.APPROVAL_REQUESTED,
    EventType.APPROVAL_DECIDED,
)
_ENDED = {wire_status(COMPLETED), wire_status(FAILED)}  # "completed", "failed"
_BY_STATUS: dict[str, tuple[str, set[str]]] = {
    EventType.TASK_STATUS_CHANGED: ("task", _ENDED),
    EventType.BATCH_STATUS_CHANGED: ("batch", _ENDED),
    EventType.ROLLBACK_STATUS_CHANGED: ("rollback", {wire_status(COMPLETED)}),
}
_FIXED: dict[str, str] = {
    EventType.BATCH_COMPLETED: "batch.completed",
    EventType.BATCH_FAILED: "batch.failed",
    EventType.ROLLBACK_COMPLETED: "rollback.completed",
    EventType.APPROVAL_REQUESTED: "approval.requested",
    EventType.APPROVAL_DECIDED: "approval.decided",
}
# Every webhook event name an endpoint may subscribe to, derived from the rules above.
WEBHOOK_EVENTS = frozenset(_FIXED.values()) | frozenset(
    f"{prefix}.{status}" for prefix, statuses in _BY_STATUS.values() for status in statuses
)
# Large free text is cut so that a delivery stays small; the full text is in the API.
MAX_TEXT = 4096


def webhook_event(event_type: str, data: Mapping[str, Any]) -> str | None:
    """The webhook event name for an orchestrator event, or None when none applies."""
    if event_type in _FIXED:
        return _FIXED[event_type]
    rule = _BY_STATUS.get(event_type)
    if rule is None:
        return None
    prefix, statuses = rule
    status = str(data.get("status", "")).lower()
    return f"{prefix}.{status}" if status in statuses else None


def webhook_data(
    event: str, source: Mapping[str, Any], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The payload's ``data``: the event's data, lower-case status, plus ``extra``
    (e.g. the task's output), long strings cut to :data:`MAX_TEXT` characters."""
    data: dict[str, Any] = {**dict(source.get("data") or {}), **dict(extra or {})}
    data["status"] = event.rsplit(".", 1)[1]
    data["source_event_id"] = source.get("id")
    return {k: _cut(v) for k, v in data.items()}


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[-MAX_TEXT:]
    return value
