"""Retention rules: what may be removed, and the names of passes. Pure code, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from provisioning_common.timeutil import as_utc

from ..engine.model import FAILED, FINAL_STATUSES
from ..rollback.model import ACTIVE_STATUSES as ACTIVE_ROLLBACK_STATUSES

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def task_expired(task: Mapping[str, Any], cutoff: datetime) -> bool:
    """A task whose final status was decided before ``cutoff``. A final task without
    ``completed_at`` (the engine always writes both together) is kept."""
    if task.get("status") not in FINAL_STATUSES:
        return False
    completed = task.get("completed_at")
    return isinstance(completed, datetime) and as_utc(completed) < cutoff


def batch_settled(batch: Mapping[str, Any] | None) -> bool:
    """Whether a batch no longer looks at its tasks, so they may go.

    Mirrors what the batch coordinator still works on
    (``BatchRepository.active_ids``): a batch that is not finished reads its tasks'
    statuses (and would take a removed task for one still Pending), and a failed
    batch with a rollback pending or running reads their compensations. A batch that
    does not exist (any more) holds nothing back."""
    if batch is None:
        return True
    status = batch.get("status")
    if status not in FINAL_STATUSES:
        return False
    rollback = batch.get("rollback")
    if isinstance(rollback, Mapping) and rollback.get("status") in ACTIVE_ROLLBACK_STATUSES:
        return False
    return not (status == FAILED and batch.get("rollback_enabled") and not rollback)


def attempt_numbers(task: Mapping[str, Any]) -> range:
    """Attempt documents a task may have: 1..attempts, plus attempts + 1 in case a
    claim was inserted that the task document never recorded."""
    return range(1, int(task.get("attempts") or 0) + 2)


def slot_start(now: datetime, interval_seconds: int) -> datetime:
    """The start of the sweep slot holding ``now`` (slots are aligned to the epoch)."""
    seconds = int(as_utc(now).timestamp())
    return datetime.fromtimestamp(seconds - seconds % interval_seconds, UTC)


def run_id(slot: datetime) -> str:
    """``retention:<slot start>``; ids sort by time (fixed-width UTC text)."""
    return f"retention:{as_utc(slot):%Y-%m-%dT%H:%M:%SZ}"


def seconds_to_next_slot(now: datetime, interval_seconds: int) -> float:
    following = slot_start(now, interval_seconds) + timedelta(seconds=interval_seconds)
    return max(0.0, (following - as_utc(now)).total_seconds())


def event_id_floor(cutoff: datetime) -> str:
    """Stored events' ids start with a 20-digit ns timestamp
    (``events.publisher.new_event_id``): every id below this one is older than
    ``cutoff``."""
    nanoseconds = (as_utc(cutoff) - _EPOCH) // timedelta(microseconds=1) * 1000
    return f"{max(0, nanoseconds):020d}"
