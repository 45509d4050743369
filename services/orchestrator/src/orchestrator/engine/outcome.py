"""How an attempt's end is judged: pure code, no I/O. Given what the process did, why
the run was stopped, the task's retry fields and the backoff base, say what the task
and the attempt become and whether the task runs again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .model import (
    ATTEMPT_TIMED_OUT,
    CANCELLED,
    COMPLETED,
    FAILED,
    AttemptEnd,
    TaskStatus,
    backoff_seconds,
    effective_attempts,
)
from .process import ProcessResult


@dataclass(frozen=True, slots=True)
class Outcome:
    """``status`` is the task's final status unless ``retry`` (then it goes back to
    Pending, to be claimed again ``delay`` seconds from now); ``attempt_status`` closes
    the attempt either way. ``failures`` is the task's failure count with this attempt."""

    status: TaskStatus
    attempt_status: TaskStatus | AttemptEnd
    error: str | None
    failures: int
    retry: bool = False
    delay: float = 0.0


def classify(
    result: ProcessResult,
    *,
    reason: str | None,
    cancel_reason: str | None,
    task: Mapping[str, Any],
    attempt: int,
    backoff_base: float,
) -> Outcome:
    """Judge attempt ``attempt`` of ``task`` (its ``timeout_seconds``, ``failures``,
    ``retries``, ``max_attempts`` and ``released``). ``reason`` is why this replica
    stopped the run (``"cancel"``, or None); a run that was lost or handed back at
    shutdown is no outcome of its own: the caller deals with it first."""
    attempt_status: TaskStatus | AttemptEnd = FAILED
    retryable = False
    error: str | None
    if reason == "cancel" or result.cancelled:
        status, error = CANCELLED, cancel_reason or "Cancelled"
        attempt_status = CANCELLED
    elif result.spawn_error:
        status, error = FAILED, result.spawn_error
    elif result.timed_out:
        status, error = FAILED, f"Timed out after {task['timeout_seconds']:g} seconds"
        attempt_status, retryable = ATTEMPT_TIMED_OUT, True
    elif result.exit_code == 0:
        status, error, attempt_status = COMPLETED, None, COMPLETED
    else:
        status, retryable = FAILED, True
        last = result.stderr_tail.strip().splitlines()[-1:] if result.stderr_tail else []
        error = f"Command exited with code {result.exit_code}" + (f": {last[0]}" if last else "")
    failures = int(task.get("failures") or 0) + (1 if status == FAILED else 0)
    if (
        retryable
        and failures <= int(task.get("retries") or 0)
        and effective_attempts(task, attempt) < int(task["max_attempts"])
    ):
        delay = backoff_seconds(backoff_base, failures)
        return Outcome(status, attempt_status, error, failures, retry=True, delay=delay)
    return Outcome(status, attempt_status, error, failures)
