"""Every event type the orchestrator publishes (on ``/ws``, in stored events and as
webhook sources), defined once. Members are ``str``: stored and sent as their values."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    TASK_STATUS_CHANGED = "TaskStatusChanged"
    TASK_PROGRESS = "TaskProgress"
    TASK_OUTPUT = "TaskOutput"
    BATCH_STATUS_CHANGED = "BatchStatusChanged"
    BATCH_PROGRESS = "BatchProgress"
    BATCH_COMPLETED = "BatchCompleted"
    BATCH_FAILED = "BatchFailed"
    ROLLBACK_STARTED = "RollbackStarted"
    ROLLBACK_STATUS_CHANGED = "RollbackStatusChanged"
    ROLLBACK_COMPLETED = "RollbackCompleted"
    APPROVAL_REQUESTED = "ApprovalRequested"
    APPROVAL_DECIDED = "ApprovalDecided"
