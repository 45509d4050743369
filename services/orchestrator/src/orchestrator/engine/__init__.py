"""The task engine: durable queue, leases, takeover, subprocess execution (DESIGN §5).

No HTTP code here; the container builds and starts it (``orchestrator.container``).
See ``services/orchestrator/ENGINE_API.md``."""

from .engine import Engine, EventSink, FinalListener
from .model import (
    CANCELLED,
    COMPLETED,
    FAILED,
    FINAL_STATUSES,
    PENDING,
    RUNNING,
    STATUSES,
    Compensation,
    TaskSpec,
)
from .settings import EngineSettings
from .store import TaskStore

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "FINAL_STATUSES",
    "PENDING",
    "RUNNING",
    "STATUSES",
    "Compensation",
    "Engine",
    "EngineSettings",
    "EventSink",
    "FinalListener",
    "TaskSpec",
    "TaskStore",
]
