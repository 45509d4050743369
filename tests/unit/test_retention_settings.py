"""Retention: settings from env with clear errors, and the pure rules of a pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.retention import RetentionSettings, model
from provisioning_common.config import ConfigError, EnvReader


def settings(env: dict[str, str]) -> RetentionSettings:
    return RetentionSettings.from_env(EnvReader(env))


def test_defaults() -> None:
    s = settings({})
    assert s == RetentionSettings(enabled=True, days=30, sweep_seconds=3600, batch=500)
    assert s.window == timedelta(days=30)


def test_values_are_read() -> None:
    s = settings(
        {
            "RETENTION_DAYS": "7",
            "RETENTION_SWEEP_SECONDS": "600",
            "RETENTION_BATCH": "50",
            "RETENTION_ENABLED": "false",
        }
    )
    assert s == RetentionSettings(enabled=False, days=7, sweep_seconds=600, batch=50)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RETENTION_DAYS": "thirty"}, "RETENTION_DAYS must be an integer, got 'thirty'"),
        ({"RETENTION_DAYS": "1.5"}, "RETENTION_DAYS must be an integer"),
        ({"RETENTION_DAYS": "0"}, "RETENTION_DAYS must be >= 1"),
        ({"RETENTION_DAYS": "99999999"}, "RETENTION_DAYS must be <= 36500"),
        ({"RETENTION_SWEEP_SECONDS": "0"}, "RETENTION_SWEEP_SECONDS must be >= 1"),
        ({"RETENTION_BATCH": "0"}, "RETENTION_BATCH must be >= 1"),
        ({"RETENTION_ENABLED": "maybe"}, "RETENTION_ENABLED must be a boolean"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(env)


def test_slots_and_run_ids() -> None:
    now = datetime(2025, 3, 4, 10, 59, 59, 900_000, tzinfo=UTC)
    assert model.slot_start(now, 3600) == datetime(2025, 3, 4, 10, tzinfo=UTC)
    assert model.run_id(model.slot_start(now, 3600)) == "retention:2025-03-04T10:00:00Z"
    assert model.seconds_to_next_slot(now, 3600) == pytest.approx(0.1)
    # Ids sort by time, so older runs are a range below a newer id.
    assert model.run_id(now - timedelta(days=1)) < model.run_id(now)


def test_event_id_floor_matches_event_ids() -> None:
    cutoff = datetime(2025, 3, 4, tzinfo=UTC)
    floor = model.event_id_floor(cutoff)
    assert floor == f"{1741046400 * 10**9:020d}"
    assert f"{1741046400 * 10**9 - 1:020d}-ffffffff" < floor < f"{1741046400 * 10**9:020d}-0"


def test_what_may_go() -> None:
    cutoff = datetime(2025, 3, 4, tzinfo=UTC)
    old = cutoff - timedelta(seconds=1)
    assert model.task_expired({"status": "Failed", "completed_at": old}, cutoff)
    assert not model.task_expired({"status": "Failed", "completed_at": cutoff}, cutoff)
    assert not model.task_expired({"status": "Running", "completed_at": old}, cutoff)
    assert not model.task_expired({"status": "Completed", "completed_at": None}, cutoff)
    # Naive datetimes (a client without tz_aware) are UTC.
    assert model.task_expired(
        {"status": "Cancelled", "completed_at": old.replace(tzinfo=None)}, cutoff
    )

    assert model.batch_settled(None)
    assert model.batch_settled({"status": "Completed"})
    assert model.batch_settled({"status": "Failed", "rollback_enabled": False, "rollback": None})
    assert model.batch_settled({"status": "Failed", "rollback": {"status": "Completed"}})
    assert not model.batch_settled({"status": "Running"})
    assert not model.batch_settled({"status": "Failed", "rollback": {"status": "Running"}})
    assert not model.batch_settled({"status": "Failed", "rollback_enabled": True, "rollback": None})

    assert list(model.attempt_numbers({"attempts": 2})) == [1, 2, 3]
    assert list(model.attempt_numbers({"attempts": 0})) == [1]
