"""Progress, ETA and size rules of the state endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.state import model

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_task_eta_from_kind_mean() -> None:
    pending = {"_id": "t", "status": "Pending"}
    assert model.task_remaining(pending, 40.0, NOW) == 40.0
    assert model.task_remaining(pending, None, NOW) is None
    running = {
        "_id": "t",
        "status": "Running",
        "progress": 50.0,
        "started_at": NOW - timedelta(seconds=10),
    }
    assert model.task_remaining(running, 40.0, NOW) == 20.0
    done = {"_id": "t", "status": "Completed"}
    assert model.task_remaining(done, 40.0, NOW) == 0.0


def test_batch_view_counts_and_eta() -> None:
    batch = {
        "_id": "b",
        "status": "Running",
        "parallel_limit": 2,
        "operations": [{"task_ids": ["a", "b", "c"]}],
    }
    tasks = [
        {"_id": "a", "status": "Completed", "kind": "k"},
        {
            "_id": "b",
            "status": "Running",
            "kind": "k",
            "progress": 50.0,
            "name": "task b",
            "current_step": "Installing Kubernetes",
            "started_at": NOW,
        },
        {"_id": "c", "status": "Pending", "kind": "k"},
    ]
    view = model.batch_progress(batch, tasks, {"k": 10.0}, NOW)
    assert view["total_steps"] == 3
    assert view["completed_steps"] == 1
    assert view["current_step"] == "Installing Kubernetes"
    assert view["progress"] == 50.0
    assert view["estimated_time_remaining"] == 8  # (5 + 10) / 2 slots, rounded


def test_format_size_and_overall() -> None:
    assert model.format_size(512) == "512B"
    assert model.format_size(2048) == "2.0KB"
    assert model.format_size(245 * 1024 * 1024) == "245MB"
    assert model.overall_status({"storage": "Healthy", "x": "Healthy"}) == "Healthy"
    assert model.overall_status({"storage": "Unhealthy", "x": "Healthy"}) == "Unhealthy"
    assert model.overall_status({"storage": "Healthy", "x": "Unhealthy"}) == "Degraded"
    assert model.mean([]) is None
    assert model.mean([1.0, 3.0]) == 2.0
