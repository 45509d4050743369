"""Batches, state and rollback over HTTP: both services as processes, the CLI
simulator, real Redis and MongoDB-compatible server."""

from __future__ import annotations

import copy
import itertools
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Services
from tests.support.cli_log import worker_pid
from tests.support.contract import CONTRACT_BATCH
from tests.support.processes import ServiceProcess
from tests.support.timing import wait_fresh_window

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FINAL = ("Completed", "Failed", "Cancelled")


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _post(
    services: Services,
    path: str,
    body: Any = None,
    url: str | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    # Rollbacks answer when their compensations finished: a generous timeout.
    return requests.post(
        f"{url or services.orch_url}{path}",
        json=body,
        headers={**services.headers(token), **(headers or {})},
        timeout=120,
    )


def _get(services: Services, path: str, url: str | None = None) -> requests.Response:
    return requests.get(f"{url or services.orch_url}{path}", headers=services.headers(), timeout=30)


def wait_batch(
    services: Services,
    batch_id: str,
    *,
    url: str | None = None,
    timeout: float = 60,
    seen: list[float] | None = None,
    rollback: bool = False,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = _get(services, f"/batch/operations/{batch_id}", url)
        if resp.status_code == 200:
            doc = resp.json()["data"]
            if seen is not None:
                seen.append(
                    _get(services, f"/state/workflows/{batch_id}/progress", url).json()["data"][
                        "progress"
                    ]
                )
            done = doc["status"] in FINAL
            if done and rollback:
                done = bool(doc["rollback"]) and doc["rollback"]["status"] in FINAL
            if done:
                return doc
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} not finished after {timeout}s: {doc}")


def task(services: Services, task_id: str, url: str | None = None) -> dict[str, Any]:
    return dict(_get(services, f"/tasks/{task_id}", url).json()["data"])


def attempts_of(services: Services, task_id: str, url: str | None = None) -> list[dict[str, Any]]:
    resp = _get(services, f"/tasks/{task_id}/attempts", url)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


def wait_batch_task_running(
    services: Services, batch_id: str, name: str, *, url: str | None = None, timeout: float = 30
) -> tuple[str, dict[str, Any]]:
    """The id and current attempt of the batch's task whose name contains ``name``,
    once that attempt is Running."""
    deadline = time.monotonic() + timeout
    seen: Any = None
    while time.monotonic() < deadline:
        doc = _get(services, f"/batch/operations/{batch_id}", url).json()["data"]
        for op in doc["operations"]:
            for task_id in op["results"]["task_ids"]:
                one = task(services, task_id, url)
                if name not in one["name"]:
                    continue
                attempts = attempts_of(services, task_id, url)
                seen = (one["status"], attempts)
                if attempts and attempts[-1]["status"] == "Running":
                    return task_id, attempts[-1]
        time.sleep(0.1)
    raise AssertionError(f"no task {name!r} of batch {batch_id} running after {timeout}s: {seen}")


def test_contract_batch_runs_in_order_with_state(services: Services) -> None:
    resp = _post(services, "/batch/execute", CONTRACT_BATCH)
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-RateLimit-Limit"]
    data = resp.json()["data"]
    assert data["status"] == "Running"
    assert data["operations"] == [
        {"id": "upcloud_servers", "status": "Pending", "progress": 0.0},
        {"id": "aws_taskservs", "status": "Pending", "progress": 0.0},
    ]
    seen: list[float] = []
    doc = wait_batch(services, data["batch_id"], seen=seen)
    assert doc["status"] == "Completed"
    assert doc["name"] == "multi_cloud_deployment"
    assert doc["storage_backend"] == "surrealdb"
    assert seen == sorted(seen)
    assert seen[-1] == 100.0
    ops = {op["id"]: op for op in doc["operations"]}
    assert ops["upcloud_servers"]["progress"] == 100.0
    assert ops["upcloud_servers"]["results"]["summary"] == "2/2 tasks completed"
    servers = [task(services, t) for t in ops["upcloud_servers"]["results"]["task_ids"]]
    taskservs = [task(services, t) for t in ops["aws_taskservs"]["results"]["task_ids"]]
    assert servers[0]["command"].endswith("servers create")
    assert servers[0]["args"][:2] == ["--provider", "upcloud"]
    assert max(_ts(t["completed_at"]) for t in servers) <= min(
        _ts(t["started_at"]) for t in taskservs
    )

    listing = _get(services, "/batch/operations?limit=5")
    assert listing.status_code == 200
    assert listing.headers["X-Total-Count"]
    assert listing.json()["data"][0]["batch_id"] == data["batch_id"]  # newest first

    progress = _get(services, f"/state/workflows/{data['batch_id']}/progress").json()["data"]
    assert set(progress) >= {
        "workflow_id",
        "progress",
        "current_step",
        "total_steps",
        "completed_steps",
        "estimated_time_remaining",
    }
    assert (progress["total_steps"], progress["completed_steps"]) == (5, 5)
    one = _get(services, f"/state/workflows/{servers[0]['id']}/progress").json()["data"]
    assert one["progress"] == 100.0
    snaps = _get(services, f"/state/workflows/{data['batch_id']}/snapshots").json()["data"]
    assert [s["state"] for s in snaps] == ["pending", "running", "completed"]
    assert all({"snapshot_id", "timestamp", "state", "details"} <= set(s) for s in snaps)
    metrics = _get(services, "/state/system/metrics").json()["data"]
    assert metrics["total_workflows"] >= 1
    assert metrics["completed_workflows"] >= 1
    assert set(metrics["system_load"]) >= {"cpu_usage", "memory_usage", "disk_usage"}
    assert metrics["system_load"]["memory_usage"] > 0
    health = _get(services, "/state/system/health").json()["data"]
    assert health["overall_status"] == "Healthy"
    assert health["components"] == {
        "storage": "Healthy",
        "batch_coordinator": "Healthy",
        "monitoring": "Healthy",
    }
    assert health["last_check"].endswith("Z")
    stats = _get(services, "/state/statistics").json()["data"]
    assert stats["total_workflows"] >= 1
    assert stats["active_snapshots"] >= 3
    assert stats["storage_usage"][-2:] in ("KB", "MB", "GB") or stats["storage_usage"][-1] == "B"
    assert stats["average_workflow_duration"] > 0


def test_validation_and_plan(services: Services) -> None:
    before = int(_get(services, "/batch/operations").headers["X-Total-Count"])
    cyclic = copy.deepcopy(CONTRACT_BATCH)
    cyclic["operations"][0]["dependencies"] = ["aws_taskservs"]
    resp = _post(services, "/batch/execute", cyclic)
    assert resp.status_code == 422
    body = resp.json()
    assert body["success"] is False
    assert "upcloud_servers -> aws_taskservs -> upcloud_servers" in body["error"]
    unknown = copy.deepcopy(CONTRACT_BATCH)
    unknown["operations"][1]["dependencies"] = ["nowhere"]
    resp = _post(services, "/batch/execute", unknown)
    assert resp.status_code == 422
    assert "nowhere" in resp.json()["error"]
    bad = _post(services, "/batch/execute", {**CONTRACT_BATCH, "parallel_limit": 0})
    assert bad.status_code == 422
    assert "parallel_limit" in bad.json()["details"]
    assert _post(services, "/batch/execute", "not an object").status_code in (400, 422)
    assert int(_get(services, "/batch/operations").headers["X-Total-Count"]) == before

    plan = _post(services, "/batch/plan", CONTRACT_BATCH)
    assert plan.status_code == 200
    p = plan.json()["data"]
    assert p["waves"] == [["upcloud_servers"], ["aws_taskservs"]]
    assert p["total_tasks"] == 5
    assert p["operations"][1]["tasks"][0]["command"].endswith("taskserv create")
    assert int(_get(services, "/batch/operations").headers["X-Total-Count"]) == before
    assert _get(services, "/batch/operations/nope").status_code == 404


def test_authorization_idempotency_and_rate_limit(
    services: Services, start_orchestrator_process: Callable[..., ServiceProcess]
) -> None:
    viewer = services.user_token("viewer")
    assert _post(services, "/batch/execute", CONTRACT_BATCH, token=viewer).status_code == 403
    assert _post(services, "/batch/plan", CONTRACT_BATCH, token=viewer).status_code == 403
    assert requests.get(f"{services.orch_url}/batch/operations", timeout=10).status_code == 401
    assert _get(services, "/batch/operations").status_code == 200

    key = {"Idempotency-Key": f"batch-{uuid.uuid4().hex}"}
    first = _post(services, "/batch/execute", CONTRACT_BATCH, headers=key)
    again = _post(services, "/batch/execute", CONTRACT_BATCH, headers=key)
    assert first.status_code == again.status_code == 200
    assert first.json()["data"]["batch_id"] == again.json()["data"]["batch_id"]
    other = _post(services, "/batch/execute", {**CONTRACT_BATCH, "name": "other"}, headers=key)
    assert other.status_code == 409

    # The batch tier is counted per user in Redis (shared by replicas): a fresh user.
    # One long window, entered with time to spare: the count cannot roll over mid-test.
    operator = services.user_token("operator")
    window = 3600
    limited = start_orchestrator_process(
        RATE_LIMIT_BATCH_PER_MINUTE="2", RATE_LIMIT_WINDOW_SECONDS=str(window)
    )
    wait_fresh_window(window)
    responses = [
        _post(services, "/batch/plan", CONTRACT_BATCH, url=limited.url, token=operator)
        for _ in range(3)
    ]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[0].headers["X-RateLimit-Limit"] == "2"
    assert int(responses[2].headers["Retry-After"]) >= 1


def test_failure_rolls_back_newest_first(services: Services) -> None:
    body = {
        "name": "failing",
        "version": "1.0.0",
        "parallel_limit": 2,
        "rollback_enabled": True,
        "operations": [
            {
                "id": "servers",
                "type": "server_batch",
                "provider": "upcloud",
                "server_configs": [{"name": "rb-web-01", "plan": "p", "zone": "z"}],
            },
            {
                "id": "cluster",
                "type": "cluster_batch",
                "provider": "upcloud",
                "dependencies": ["servers"],
                "cluster_type": "rb-k8s",
            },
            {
                "id": "bad",
                "type": "taskserv_batch",
                "provider": "upcloud",
                "dependencies": ["cluster"],
                "taskservs": ["will-fail"],
            },
            {
                "id": "after",
                "type": "taskserv_batch",
                "provider": "upcloud",
                "dependencies": ["bad"],
                "taskservs": ["cilium"],
            },
        ],
    }
    batch_id = _post(services, "/batch/execute", body).json()["data"]["batch_id"]
    doc = wait_batch(services, batch_id, rollback=True)
    assert doc["status"] == "Failed"
    status = {op["id"]: op["status"] for op in doc["operations"]}
    assert status == {
        "servers": "Completed",
        "cluster": "Completed",
        "bad": "Failed",
        "after": "Cancelled",
    }
    assert doc["rolled_back"] is True
    assert doc["rollback"]["operations_executed"] == 2
    comps = [task(services, t) for t in doc["rollback"]["task_ids"]]
    assert [c["command"].split()[-2:] for c in comps] == [
        ["cluster", "delete"],
        ["servers", "delete"],
    ]
    assert _ts(comps[0]["completed_at"]) <= _ts(comps[1]["started_at"])
    cancel = _post(services, f"/batch/operations/{batch_id}/cancel")
    assert cancel.status_code == 409


def test_cancel_mid_batch(services: Services) -> None:
    body = copy.deepcopy(CONTRACT_BATCH)
    body["operations"][0]["server_configs"][0]["name"] = "web-sleep5"
    batch_id = _post(services, "/batch/execute", body).json()["data"]["batch_id"]
    running_id, _ = wait_batch_task_running(services, batch_id, "web-sleep5")
    first = _post(services, f"/batch/operations/{batch_id}/cancel")
    assert first.status_code == 200
    assert first.json()["data"] == "Operation cancelled"
    assert _post(services, f"/batch/operations/{batch_id}/cancel").status_code == 200
    doc = wait_batch(services, batch_id, timeout=30)
    assert doc["status"] == "Cancelled"
    assert doc["operations"][1]["status"] == "Cancelled"
    # The task that was running was stopped, not left to finish its 5 s.
    assert services.wait_task(running_id)["status"] == "Cancelled"


def test_kill_9_mid_batch_then_restart_completes(
    services: Services, start_orchestrator_process: Callable[..., ServiceProcess]
) -> None:
    """SIGKILL a replica while it runs a task of a batch (that task's attempt is
    Running with the replica's worker_id); a new replica takes the task over (the
    killed attempt is Lost) and completes the batch."""
    env = {
        "MONGODB_DATABASE": f"orch_{uuid.uuid4().hex[:12]}",
        "ENGINE_LEASE_SECONDS": "3",
        "ENGINE_HEARTBEAT_SECONDS": "0.5",
    }
    first = start_orchestrator_process(**env)
    assert first.proc is not None
    body = copy.deepcopy(CONTRACT_BATCH)
    body["operations"][0]["server_configs"][0]["name"] = "web-sleep3"
    resp = _post(services, "/batch/execute", body, url=first.url)
    assert resp.status_code == 200, resp.text
    batch_id = resp.json()["data"]["batch_id"]
    task_id, running = wait_batch_task_running(services, batch_id, "web-sleep3", url=first.url)
    assert worker_pid(running["worker_id"]) == first.proc.pid, running
    first.kill()
    second = start_orchestrator_process(**env)
    assert second.proc is not None
    doc = wait_batch(services, batch_id, url=second.url, timeout=90)
    assert doc["status"] == "Completed"
    attempts = attempts_of(services, task_id, second.url)
    assert [a["status"] for a in attempts] == ["Lost", "Completed"], attempts
    assert attempts[0]["worker_id"] == running["worker_id"]
    assert worker_pid(attempts[1]["worker_id"]) == second.proc.pid
    assert _ts(attempts[0]["ended_at"]) <= _ts(attempts[1]["started_at"])


def test_checkpoint_rollback_and_restore(services: Services) -> None:
    def chain(tag: str) -> dict[str, Any]:
        return {
            "name": f"cp-{tag}",
            "version": "1.0.0",
            "parallel_limit": 2,
            "operations": [
                {
                    "id": "servers",
                    "type": "server_batch",
                    "provider": "aws",
                    "server_configs": [{"name": f"{tag}-web", "plan": "p", "zone": "z"}],
                },
                {
                    "id": "ts",
                    "type": "taskserv_batch",
                    "provider": "aws",
                    "dependencies": ["servers"],
                    "taskservs": [f"{tag}-ts"],
                },
            ],
        }

    resp = _post(
        services,
        "/rollback/checkpoints",
        {"name": "before_major_update", "description": "before v2"},
    )
    assert resp.status_code == 201
    cp = resp.json()["data"]
    assert _post(services, "/rollback/checkpoints", {"name": ""}).status_code == 422
    first_tag, second_tag = f"a{uuid.uuid4().hex[:6]}", f"b{uuid.uuid4().hex[:6]}"
    first = _post(services, "/batch/execute", chain(first_tag)).json()["data"]
    wait_batch(services, first["batch_id"])
    second = _post(services, "/batch/execute", chain(second_tag)).json()["data"]
    wait_batch(services, second["batch_id"])

    ledger = _get(services, "/rollback/operations?limit=100").json()["data"]
    mine = [e for e in ledger if e["batch_id"] == second["batch_id"]]
    assert {e["operation_id"] for e in mine} == {"servers", "ts"}
    assert all({"id", "task_id", "applied", "compensation", "applied_at"} <= set(e) for e in mine)
    partial = _post(
        services,
        "/rollback/execute",
        {"operation_ids": [e["id"] for e in mine if e["operation_id"] == "ts"]},
    )
    assert partial.status_code == 200
    assert partial.json()["data"]["operations_executed"] == 1

    result = _post(services, "/rollback/execute", {"checkpoint_id": cp})
    assert result.status_code == 200, result.text
    data = result.json()["data"]
    assert data["success"] is True
    assert set(data) == {
        "rollback_id",
        "success",
        "operations_executed",
        "operations_failed",
        "duration",
    }
    # Everything after the checkpoint not yet compensated: 3 (second's ts was done).
    assert data["operations_executed"] >= 3
    listed = _get(services, "/tasks?limit=200").json()["data"]
    tags = (first_tag, second_tag)
    deletes = sorted(
        (
            t
            for t in listed
            if t["name"].startswith("rollback:") and t["name"].split(":")[-1].startswith(tags)
        ),
        key=lambda t: _ts(t["started_at"]),
    )
    # Newest first; the second batch's taskserv was compensated by the partial rollback.
    assert [t["name"].split(":")[-1] for t in deletes] == [
        f"{second_tag}-ts",
        f"{second_tag}-web",
        f"{first_tag}-ts",
        f"{first_tag}-web",
    ]
    assert [t["command"].split()[-2:] for t in deletes[1:]] == [
        ["servers", "delete"],
        ["taskserv", "delete"],
        ["servers", "delete"],
    ]
    for a, b in itertools.pairwise(deletes[1:]):
        assert _ts(a["completed_at"]) <= _ts(b["started_at"])

    detail = _get(services, f"/rollback/checkpoints/{cp}").json()["data"]
    assert set(detail) >= {"id", "name", "description", "created_at", "size", "operations_count"}
    listing = _get(services, "/rollback/checkpoints").json()["data"]
    assert any(c["id"] == cp for c in listing)
    restored = _post(services, f"/rollback/restore/{cp}")
    assert restored.status_code == 200
    assert restored.json()["data"] == f"State restored from checkpoint {cp}"
    assert _get(services, f"/batch/operations/{second['batch_id']}").status_code == 404
    stats = _get(services, "/rollback/statistics").json()["data"]
    assert stats["total_checkpoints"] >= 1
    assert stats["total_rollbacks"] >= 2
    assert set(stats) == {
        "total_checkpoints",
        "total_rollbacks",
        "success_rate",
        "average_rollback_time",
    }
    assert _post(services, "/rollback/restore/missing").status_code == 404
    assert _post(services, "/rollback/execute", {}).status_code == 422
