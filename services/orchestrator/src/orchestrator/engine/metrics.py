"""The contract's task metrics: ``orchestrator_tasks_total`` and
``orchestrator_task_duration_seconds``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TASKS_TOTAL = Counter(
    "orchestrator_tasks", "Tasks that reached a final status on this replica", ["status"]
)
TASK_DURATION = Histogram(
    "orchestrator_task_duration_seconds",
    "Task execution duration",
    buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
RUNNING_TASKS = Gauge("orchestrator_running_tasks", "Tasks running on this replica")
TAKEOVERS = Counter("orchestrator_lease_takeovers", "Attempts taken over after a lease expired")
REPAIRS = Counter(
    "orchestrator_task_repairs",
    "Task documents brought back in line with their final record or handed back to the queue",
)
