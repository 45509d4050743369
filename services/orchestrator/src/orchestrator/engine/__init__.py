"""The task engine: durable queue, leases, takeover, subprocess execution (DESIGN §5).

No HTTP code here; the container builds and starts it (``orchestrator.container``).
See ``services/orchestrator/ENGINE_API.md``.

Layout: ``engine.Engine`` is the facade (public API, start/stop) over parts that share
one ``state.EngineState`` (with ``state.Run``, one attempt running here):
``scheduler`` (ticks, dependency checks, takeover pass, claims), ``attempts`` (slots,
the claim, starting a run, taking over an expired lease), ``execution`` (the process,
output and progress, recording the end), ``outcome`` (pure: how an end is judged),
``finals`` (final decisions, repairs, final listeners), ``events`` (published events),
``leases`` (heartbeats, own-lease checks, cancel polling) and ``maintenance`` (flushes,
index check, queue sweep). ``model``, ``process``, ``store``, ``index``, ``settings``
and ``metrics`` hold the rules, the subprocess, storage and configuration."""

from .engine import Engine
from .events import EventSink
from .finals import FinalListener
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
