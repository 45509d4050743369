"""The orchestrator's Prometheus metrics (served by the shared ``GET /metrics``).

Names and labels of the first two are the contract's. Where each is updated:

=====================================  ==============================================
``TASKS_TOTAL.labels(status).inc()``   engine, once per task reaching a final status
                                       (``completed|failed|cancelled``, lower case),
                                       by the replica that decided it (defined
                                       in ``engine.metrics``, called by the engine)
``TASK_DURATION.observe(seconds)``     same place: ``completed_at - started_at``
``QUEUE_DEPTH``                        gauge of Pending tasks (cluster-wide); refreshed
                                       every ``QUEUE_DEPTH_REFRESH_SECONDS`` by
                                       the container's background loop
``RUNNING_TASKS``                      ``inc()`` when this replica starts a process,
                                       ``dec()`` when it ends (per replica)
``LEASE_TAKEOVERS.inc()``              engine, when it takes over an expired lease
``WS_CONNECTIONS``                     ``/ws`` handler: ``inc()`` on open, ``dec()`` in
                                       ``finally``
``WEBHOOK_DELIVERIES.labels(outcome)`` webhooks outbox, per attempt
                                       (``success|retrying|failed``)
``AUDIT_DELIVERIES.labels(outcome)``   audit outbox, per attempt
``RETENTION_REMOVED.labels(kind)``     retention sweeper, per pass: documents removed
                                       (``tasks|attempts|events|outbox``)
=====================================  ==============================================

Counters are only ever incremented; gauges describe this replica.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

# The engine defines the task metrics it updates; they are re-exported here so
# that every orchestrator metric can be found in one place (one definition each).
from .engine.metrics import RUNNING_TASKS, TASK_DURATION, TASKS_TOTAL
from .engine.metrics import TAKEOVERS as LEASE_TAKEOVERS
from .engine.model import FINAL_STATUSES, PENDING, TaskStatus, wire_status

if TYPE_CHECKING:
    from .engine import TaskStore

QUEUE_DEPTH = Gauge("orchestrator_queue_depth", "Tasks waiting to run (Pending)")
WS_CONNECTIONS = Gauge("orchestrator_websocket_connections", "Open /ws connections")
WEBHOOK_DELIVERIES = Counter(
    "orchestrator_webhook_deliveries",
    "Webhook delivery attempts by outcome",
    ["outcome"],
)
AUDIT_DELIVERIES = Counter(
    "orchestrator_audit_deliveries",
    "Audit event delivery attempts to the control center by outcome",
    ["outcome"],
)
RETENTION_REMOVED = Counter(
    "orchestrator_retention_removed",
    "Finished history removed by the retention sweeper, by kind",
    ["kind"],
)
RETENTION_KINDS = ("tasks", "attempts", "events", "outbox")

__all__ = [
    "AUDIT_DELIVERIES",
    "LEASE_TAKEOVERS",
    "QUEUE_DEPTH",
    "RETENTION_KINDS",
    "RETENTION_REMOVED",
    "RUNNING_TASKS",
    "TASKS_TOTAL",
    "TASK_DURATION",
    "WEBHOOK_DELIVERIES",
    "WS_CONNECTIONS",
    "init_labels",
    "queue_depth_loop",
    "record_task_final",
]

# The ``status`` label values of TASKS_TOTAL: the final task statuses in lower case,
# in the enum's order (``completed``, ``failed``, ``cancelled``).
FINAL_TASK_STATUSES = tuple(wire_status(s) for s in TaskStatus if s in FINAL_STATUSES)


def record_task_final(status: str, duration_seconds: float | None) -> None:
    """One call where the engine decides a final status (any case accepted)."""
    TASKS_TOTAL.labels(status.lower()).inc()
    if duration_seconds is not None and duration_seconds >= 0:
        TASK_DURATION.observe(duration_seconds)


def init_labels() -> None:
    """Expose zero-valued series so that dashboards see every label from the start."""
    for status in FINAL_TASK_STATUSES:
        TASKS_TOTAL.labels(status)
    for outcome in ("success", "retrying", "failed"):
        WEBHOOK_DELIVERIES.labels(outcome)
        AUDIT_DELIVERIES.labels(outcome)
    for kind in RETENTION_KINDS:
        RETENTION_REMOVED.labels(kind)


init_labels()

log = logging.getLogger(__name__)
QUEUE_DEPTH_REFRESH_SECONDS = 5.0


async def refresh_queue_depth(store: TaskStore) -> None:
    QUEUE_DEPTH.set(await store.count(status=PENDING))


async def queue_depth_loop(store: TaskStore) -> None:
    """Keep the queue-depth gauge fresh (the other metrics are updated where they
    happen); the container runs it for the app's lifetime."""
    while True:
        try:
            await refresh_queue_depth(store)
        except Exception as exc:  # storage hiccup: keep the last value
            log.debug("queue depth refresh failed: %s", type(exc).__name__)
        await asyncio.sleep(QUEUE_DEPTH_REFRESH_SECONDS)
