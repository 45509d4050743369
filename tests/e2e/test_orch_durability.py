"""Durability across processes: kill -9 then takeover; two replicas share tasks."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime

import pytest
import requests

from tests.e2e.conftest import Services
from tests.support.processes import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_kill_9_then_restart_takes_over_the_task(
    services: Services, start_orchestrator_process: Callable[..., ServiceProcess]
) -> None:
    env = {
        "MONGODB_DATABASE": f"orch_{uuid.uuid4().hex[:12]}",
        "ENGINE_LEASE_SECONDS": "4",
        "ENGINE_HEARTBEAT_SECONDS": "0.5",
    }
    first = start_orchestrator_process(**env)
    resp = requests.post(
        f"{first.url}/workflows/servers/create",
        json={"infra": "durable-sleep3", "settings": "c.k"},
        headers=services.headers(),
        timeout=10,
    )
    task_id = resp.json()["data"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        doc = requests.get(
            f"{first.url}/tasks/{task_id}", headers=services.headers(), timeout=10
        ).json()["data"]
        if doc["status"] == "Running":
            break
        time.sleep(0.05)
    assert doc["status"] == "Running"
    first.kill()  # SIGKILL to its process group: no shutdown code runs
    second = start_orchestrator_process(**env)
    task = services.wait_task(task_id, url=second.url, timeout=30)
    assert task["status"] == "Completed"
    assert task["attempts"] == 2
    attempts = requests.get(
        f"{second.url}/tasks/{task_id}/attempts", headers=services.headers(), timeout=10
    ).json()["data"]
    assert [a["status"] for a in attempts] == ["Lost", "Completed"]
    assert attempts[0]["worker_id"] != attempts[1]["worker_id"]
    assert _parse(attempts[0]["ended_at"]) <= _parse(attempts[1]["started_at"])


def test_two_replicas_share_100_tasks_without_overlapping_attempts(
    services: Services, start_orchestrator_process: Callable[..., ServiceProcess]
) -> None:
    env = {
        "MONGODB_DATABASE": f"orch_{uuid.uuid4().hex[:12]}",
        "PROVISIONING_SIM_DURATION": "0",
        "PROVISIONING_SIM_STEPS": "1",
        "ENGINE_CONCURRENCY": "8",
        "LOG_LEVEL": "INFO",
    }
    a, b = start_orchestrator_process(**env), start_orchestrator_process(**env)
    ids = []
    for i in range(100):
        target = a if i % 2 else b
        resp = requests.post(
            f"{target.url}/workflows/servers/create",
            json={"infra": f"quick-{i}", "settings": "c.k"},
            headers=services.headers(),
            timeout=10,
        )
        assert resp.status_code == 200
        ids.append(resp.json()["data"])
    workers: set[str] = set()
    for task_id in ids:
        task = services.wait_task(task_id, url=a.url, timeout=120)
        assert task["status"] == "Completed", task
        attempts = requests.get(
            f"{b.url}/tasks/{task_id}/attempts", headers=services.headers(), timeout=10
        ).json()["data"]
        assert attempts, task_id
        spans = sorted((_parse(x["started_at"]), _parse(x["ended_at"])) for x in attempts)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start, f"overlapping attempts for {task_id}: {attempts}"
        assert [x["status"] for x in attempts][-1] == "Completed", json.dumps(attempts)
        workers.update(x["worker_id"] for x in attempts)
    assert len(workers) == 2, "both replicas should have run tasks"


def test_sigterm_hands_running_tasks_back(
    services: Services, start_orchestrator_process: Callable[..., ServiceProcess]
) -> None:
    env = {
        "MONGODB_DATABASE": f"orch_{uuid.uuid4().hex[:12]}",
        "ENGINE_SHUTDOWN_GRACE_SECONDS": "0.5",
    }
    first = start_orchestrator_process(**env)
    resp = requests.post(
        f"{first.url}/workflows/servers/create",
        json={"infra": "handback-sleep4", "settings": "c.k"},
        headers=services.headers(),
        timeout=10,
    )
    task_id = resp.json()["data"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        doc = requests.get(
            f"{first.url}/tasks/{task_id}", headers=services.headers(), timeout=10
        ).json()["data"]
        if doc["status"] == "Running":
            break
        time.sleep(0.05)
    assert first.stop() == 0  # SIGTERM: graceful, exits cleanly
    second = start_orchestrator_process(**env)
    task = services.wait_task(task_id, url=second.url, timeout=30)
    assert task["status"] == "Completed"
    attempts = requests.get(
        f"{second.url}/tasks/{task_id}/attempts", headers=services.headers(), timeout=10
    ).json()["data"]
    assert [a["status"] for a in attempts] == ["Released", "Completed"]
