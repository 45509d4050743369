"""Retention of finished history (``docs/retention.md``): a background sweeper that,
once per ``RETENTION_SWEEP_SECONDS`` and on one replica at a time, removes tasks
finished longer than ``RETENTION_DAYS`` ago with everything stored under their ids,
and stored events and finished outbox items older than the window.

The container starts it after the engine (its ``TaskStore`` and task index are what it
walks); it has no routes."""

from __future__ import annotations

from .repository import RetentionRepository
from .service import PassResult, RetentionSweeper
from .settings import RetentionSettings

__all__ = [
    "PassResult",
    "RetentionRepository",
    "RetentionSettings",
    "RetentionSweeper",
]
