"""The engine's judgement of an attempt's end (``orchestrator.engine.outcome``): pure,
no database, no process."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any

import pytest

from orchestrator.engine.model import AttemptEnd, TaskStatus
from orchestrator.engine.outcome import Outcome, classify
from orchestrator.engine.process import ProcessResult

BACKOFF = 2.0


def result(
    exit_code: int | None = 0,
    *,
    timed_out: bool = False,
    cancelled: bool = False,
    spawn_error: str | None = None,
    stderr_tail: str = "",
) -> ProcessResult:
    return ProcessResult(exit_code, timed_out, cancelled, spawn_error, stderr_tail)


def task(**fields: Any) -> dict[str, Any]:
    return {
        "_id": "t-1",
        "timeout_seconds": 30.0,
        "max_attempts": 3,
        "retries": 0,
        "failures": 0,
        "released": 0,
        **fields,
    }


def judge(
    process: ProcessResult,
    doc: dict[str, Any] | None = None,
    *,
    attempt: int = 1,
    reason: str | None = None,
    cancel_reason: str | None = None,
) -> Outcome:
    return classify(
        process,
        reason=reason,
        cancel_reason=cancel_reason,
        task=task() if doc is None else doc,
        attempt=attempt,
        backoff_base=BACKOFF,
    )


def test_success_completes_the_task_and_the_attempt() -> None:
    outcome = judge(result(0))
    assert outcome == Outcome(TaskStatus.COMPLETED, TaskStatus.COMPLETED, None, 0)
    assert not outcome.retry
    with pytest.raises(FrozenInstanceError):
        outcome.retry = True  # type: ignore[misc]


def test_success_keeps_the_failures_of_earlier_attempts() -> None:
    assert judge(result(0), task(failures=2, retries=3), attempt=3).failures == 2


def test_non_zero_exit_fails_with_the_last_stderr_line() -> None:
    outcome = judge(result(3, stderr_tail="starting\nno such zone: xx-1\n\n"))
    assert outcome.status == TaskStatus.FAILED
    assert outcome.attempt_status == TaskStatus.FAILED
    assert outcome.error == "Command exited with code 3: no such zone: xx-1"
    assert (outcome.failures, outcome.retry) == (1, False)


def test_non_zero_exit_without_stderr() -> None:
    assert judge(result(1)).error == "Command exited with code 1"
    assert judge(result(1, stderr_tail=" \n")).error == "Command exited with code 1"


def test_timeout_is_retryable() -> None:
    outcome = judge(result(None, timed_out=True), task(retries=1, timeout_seconds=1.5))
    assert outcome.status == TaskStatus.FAILED
    assert outcome.attempt_status == AttemptEnd.TIMED_OUT
    assert outcome.error == "Timed out after 1.5 seconds"
    assert (outcome.retry, outcome.failures, outcome.delay) == (True, 1, BACKOFF)


def test_timeout_without_retries_is_final() -> None:
    outcome = judge(result(None, timed_out=True))
    assert (outcome.status, outcome.attempt_status) == (TaskStatus.FAILED, AttemptEnd.TIMED_OUT)
    assert outcome.error == "Timed out after 30 seconds"
    assert not outcome.retry


@pytest.mark.parametrize(
    ("process", "reason", "cancel_reason", "error"),
    [
        (result(-15, cancelled=True), "cancel", "Cancelled by user", "Cancelled by user"),
        (result(-15, cancelled=True), None, None, "Cancelled"),
        # Stopped for a cancel but exited by itself meanwhile: still cancelled.
        (result(1), "cancel", "Batch cancelled", "Batch cancelled"),
    ],
)
def test_cancel_is_final_and_never_retried(
    process: ProcessResult, reason: str | None, cancel_reason: str | None, error: str
) -> None:
    outcome = judge(process, task(retries=5), reason=reason, cancel_reason=cancel_reason)
    assert outcome == Outcome(TaskStatus.CANCELLED, TaskStatus.CANCELLED, error, 0)


def test_spawn_error_fails_without_retry() -> None:
    outcome = judge(
        result(None, spawn_error="No such file: /usr/local/provisioning"), task(retries=2)
    )
    assert outcome.status == outcome.attempt_status == TaskStatus.FAILED
    assert outcome.error == "No such file: /usr/local/provisioning"
    assert (outcome.failures, outcome.retry) == (1, False)


def test_retry_with_exponential_backoff() -> None:
    first = judge(result(2), task(retries=3))
    second = judge(result(2), task(retries=3, failures=1), attempt=2)
    third = judge(result(2), task(retries=3, failures=2, max_attempts=5), attempt=3)
    assert [(o.retry, o.failures, o.delay) for o in (first, second, third)] == [
        (True, 1, BACKOFF),
        (True, 2, BACKOFF * 2),
        (True, 3, BACKOFF * 4),
    ]
    # A retried attempt still records how it ended.
    assert (first.status, first.attempt_status) == (TaskStatus.FAILED, TaskStatus.FAILED)
    assert first.error == "Command exited with code 2"


def test_retries_exhausted_is_final() -> None:
    outcome = judge(result(2), task(retries=2, failures=2, max_attempts=10), attempt=3)
    assert (outcome.status, outcome.failures, outcome.retry) == (TaskStatus.FAILED, 3, False)
    assert outcome.delay == 0.0


def test_attempt_limit_stops_retries() -> None:
    outcome = judge(result(2), task(retries=5, failures=2, max_attempts=3), attempt=3)
    assert (outcome.status, outcome.retry) == (TaskStatus.FAILED, False)


def test_released_attempts_do_not_count_towards_the_limit() -> None:
    # Attempt 3, one of them handed back at shutdown: two count, a third may run.
    doc = task(retries=5, failures=1, max_attempts=3, released=1)
    outcome = judge(result(2), doc, attempt=3)
    assert (outcome.retry, outcome.failures, outcome.delay) == (True, 2, BACKOFF * 2)
    # Without the release the limit is reached.
    assert not judge(result(2), task(retries=5, failures=1, max_attempts=3), attempt=3).retry
