"""The contract's flow with both services as processes: log in at the control center,
submit each workflow, receive TaskStatusChanged on /ws, read the tasks."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import psutil
import pytest
import requests

from tests.e2e.conftest import Services

pytestmark = pytest.mark.e2e

BODIES = {
    "servers": {"infra": "production", "settings": "config.k", "check_mode": False, "wait": True},
    "taskserv": {
        "operation": "create",
        "taskserv": "kubernetes",
        "infra": "production",
        "settings": "config.k",
        "check_mode": False,
        "wait": True,
    },
    "cluster": {
        "operation": "create",
        "cluster_type": "buildkit",
        "infra": "production",
        "settings": "config.k",
        "check_mode": True,
        "wait": False,
    },
}


def submit(
    services: Services,
    kind: str,
    body: dict[str, Any],
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    return requests.post(
        f"{services.orch_url}/workflows/{kind}/create",
        json=body,
        headers={**services.headers(token), **(headers or {})},
        timeout=10,
    )


async def collect(url: str, until: set[str], timeout: float = 30) -> list[dict[str, Any]]:
    """Read /ws events until every task id in ``until`` has a final status event."""
    seen: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        deadline = time.monotonic() + timeout
        remaining = set(until)
        while remaining and time.monotonic() < deadline:
            msg = await ws.receive(timeout=deadline - time.monotonic())
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            event = json.loads(msg.data)
            seen.append(event)
            if event["event_type"] == "TaskStatusChanged" and event["data"]["status"] in (
                "completed",
                "failed",
                "cancelled",
            ):
                remaining.discard(event["data"]["task_id"])
    return seen


def test_contract_flow_three_workflows_over_http_and_ws(services: Services) -> None:
    async def run() -> tuple[list[str], list[dict[str, Any]]]:
        url = f"{services.ws_url}?token={services.admin_token}&events=TaskStatusChanged"
        ids: list[str] = []
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            for kind, body in BODIES.items():
                resp = await asyncio.to_thread(submit, services, kind, body)
                assert resp.status_code == 200, resp.text
                payload = resp.json()
                assert payload["success"] is True
                assert isinstance(payload["data"], str)
                ids.append(payload["data"])
            events: list[dict[str, Any]] = []
            finals: set[str] = set()
            deadline = time.monotonic() + 30
            # Events of other tests' tasks may arrive too: wait for ours.
            while not set(ids) <= finals:
                left = deadline - time.monotonic()
                try:
                    msg = await ws.receive(timeout=max(left, 0.01))
                except TimeoutError:
                    # Say what happened: the events heard and what the API says of each task.
                    states = {
                        t: (
                            await asyncio.to_thread(
                                requests.get,
                                f"{services.orch_url}/tasks/{t}",
                                headers=services.headers(),
                                timeout=10,
                            )
                        ).text
                        for t in ids
                    }
                    raise AssertionError(f"events {events}; tasks {states}") from None
                assert msg.type == aiohttp.WSMsgType.TEXT
                event = json.loads(msg.data)
                if event["event_type"] == "Heartbeat":
                    continue  # the stream is idle while a loaded machine catches up
                if event["data"].get("task_id") not in ids:
                    continue  # a task of an earlier test, finishing late
                events.append(event)
                if event["data"].get("status") == "completed":
                    finals.add(event["data"]["task_id"])
        return ids, events

    ids, events = asyncio.run(run())
    for event in events:
        assert set(event) == {"id", "event_type", "timestamp", "data", "metadata"}
        assert event["event_type"] == "TaskStatusChanged"
        assert event["timestamp"].endswith("Z")
        assert event["metadata"]["task_id"] == event["data"]["task_id"]
    for task_id in ids:
        statuses = [e["data"]["status"] for e in events if e["data"]["task_id"] == task_id]
        assert statuses[-2:] == ["running", "completed"]
    cli = services.orch_env.get("PROVISIONING_CLI") or ""
    expected = {
        ids[0]: ("servers create", ["--infra", "production", "--settings", "config.k", "--wait"]),
        ids[1]: (
            "taskserv create",
            ["kubernetes", "--infra", "production", "--settings", "config.k", "--wait"],
        ),
        ids[2]: (
            "cluster create",
            ["buildkit", "--infra", "production", "--settings", "config.k", "--check"],
        ),
    }
    for task_id, (command, args) in expected.items():
        resp = requests.get(
            f"{services.orch_url}/tasks/{task_id}", headers=services.headers(), timeout=10
        )
        assert resp.status_code == 200
        task = resp.json()["data"]
        assert task["status"] == "Completed"
        assert task["command"].endswith(command)
        assert task["command"].startswith(cli)
        assert task["args"] == args
        assert "Successfully created" in task["output"]
        assert task["error"] is None
        assert task["progress"] == 100.0
        assert task["created_at"] <= task["started_at"] <= task["completed_at"]
        assert set(task) >= {
            "id",
            "name",
            "command",
            "args",
            "dependencies",
            "status",
            "created_at",
            "started_at",
            "completed_at",
            "output",
            "error",
            "progress",
            "current_step",
            "attempts",
        }
    # The list: newest first, pagination headers, status filter.
    resp = requests.get(
        f"{services.orch_url}/tasks",
        params={"limit": "2", "status": "Completed"},
        headers=services.headers(),
        timeout=10,
    )
    assert resp.status_code == 200
    assert resp.headers["X-Limit"] == "2"
    assert resp.headers["X-Offset"] == "0"
    assert int(resp.headers["X-Total-Count"]) >= 3
    assert 'rel="next"' in resp.headers["Link"]
    assert "X-RateLimit-Limit" in resp.headers
    listed = resp.json()["data"]
    assert [t["id"] for t in listed] == [ids[2], ids[1]]
    attempts = requests.get(
        f"{services.orch_url}/tasks/{ids[0]}/attempts", headers=services.headers(), timeout=10
    ).json()["data"]
    assert [a["status"] for a in attempts] == ["Completed"]
    assert attempts[0]["id"] == f"{ids[0]}:1"


def test_failing_task_shows_failed_with_error(services: Services) -> None:
    resp = submit(services, "servers", {"infra": "web-fail", "settings": "config.k"})
    task = services.wait_task(resp.json()["data"])
    assert task["status"] == "Failed"
    assert task["error"].startswith("Command exited with code 1")


def _processes_with(marker: str) -> list[int]:
    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in (proc.info["cmdline"] or [])):
                pids.append(proc.pid)
        except psutil.Error:
            continue
    return pids


def test_cancel_running_task_leaves_no_process(services: Services) -> None:
    marker = f"cancelme-sleep60-{time.monotonic_ns()}"
    task_id = submit(services, "servers", {"infra": marker, "settings": "c.k"}).json()["data"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not _processes_with(marker):
        time.sleep(0.05)
    assert _processes_with(marker), "the CLI never started"
    resp = requests.post(
        f"{services.orch_url}/tasks/{task_id}/cancel", headers=services.headers(), timeout=10
    )
    assert resp.status_code == 200
    assert resp.json()["success"] is True
    task = services.wait_task(task_id, timeout=10)
    assert task["status"] == "Cancelled"
    assert _processes_with(marker) == []
    again = requests.post(
        f"{services.orch_url}/tasks/{task_id}/cancel", headers=services.headers(), timeout=10
    )
    assert again.status_code == 409
    assert again.json() == {"success": False, "error": "Task has already finished"}


def test_idempotency_key(services: Services) -> None:
    body = {"infra": "idem", "settings": "c.k"}
    key = {"Idempotency-Key": f"k-{time.monotonic_ns()}"}
    first = submit(services, "servers", body, headers=key)
    second = submit(services, "servers", body, headers=key)
    assert first.status_code == second.status_code == 200
    assert first.json()["data"] == second.json()["data"]
    other = submit(services, "servers", {**body, "wait": True}, headers=key)
    assert other.status_code == 409
    assert other.json()["success"] is False
    fresh = submit(
        services, "servers", body, headers={"Idempotency-Key": key["Idempotency-Key"] + "x"}
    )
    assert fresh.json()["data"] != first.json()["data"]
