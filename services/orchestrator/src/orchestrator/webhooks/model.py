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
=========================================  ====================

The status is read from ``data.status`` (any case)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SOURCE_EVENT_TYPES = (
    "TaskStatusChanged",
    "BatchStatusChanged",
    "BatchCompleted",
    "BatchFailed",
    "RollbackCompleted",
    "RollbackStatusChanged",
)
_BY_STATUS = {
    "TaskStatusChanged": ("task", {"completed", "failed"}),
    "BatchStatusChanged": ("batch", {"completed", "failed"}),
    "RollbackStatusChanged": ("rollback", {"completed"}),
}
_FIXED = {
    "BatchCompleted": "batch.completed",
    "BatchFailed": "batch.failed",
    "RollbackCompleted": "rollback.completed",
}
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
