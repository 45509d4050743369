"""The cross-service audit trail with both services as processes: workflow
submissions at the orchestrator appear in the control center's ``GET /audit/logs``
with the caller's user id; submissions made while the control center is down
arrive once it is back, each exactly once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.e2e.conftest import E2E_ORCH_ENV, Services
from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    auth_header,
    login,
    orchestrator_env,
    start_control_center,
)
from tests.support.orchestrator import start_orchestrator
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def pair(stack: Any) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """A control center and an orchestrator of our own: this test stops the CC."""
    cc = start_control_center(stack.env())
    orch: ServiceProcess | None = None
    try:
        orch = start_orchestrator(
            stack.env(),
            **orchestrator_env(cc.url),
            **E2E_ORCH_ENV,
            MONGODB_DATABASE=f"orch_audit_{uuid.uuid4().hex[:10]}",
            AUDIT_RETRY_MAX_DELAY_SECONDS="0.5",
            INTROSPECTION_CACHE_SECONDS="60",
        )
        yield cc, orch
    finally:
        if orch is not None:
            orch.stop()
        cc.stop()


def submit(orch: ServiceProcess, token: str, infra: str) -> str:
    return submit_url(orch.url, token, infra)


def submit_url(url: str, token: str, infra: str) -> str:
    body = {"infra": infra, "settings": "config.k", "check_mode": False, "wait": True}
    resp = requests.post(
        f"{url}/workflows/servers/create", json=body, headers=auth_header(token), timeout=10
    )
    assert resp.status_code in (200, 201, 202), resp.text
    return str(resp.json()["data"])


def audit_by_task(cc: ServiceProcess, token: str) -> dict[str, list[dict[str, Any]]]:
    resp = requests.get(
        f"{cc.url}/audit/logs",
        params={"action": "server.create", "limit": "1000"},
        headers=auth_header(token),
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in resp.json()["data"]:
        task_id = (entry.get("details") or {}).get("task_id")
        if task_id:
            found.setdefault(str(task_id), []).append(entry)
    return found


def wait_audited(cc: ServiceProcess, ids: list[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    token = str(login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"])
    found: dict[str, list[dict[str, Any]]] = {}
    while time.monotonic() < deadline:
        found = audit_by_task(cc, token)
        if all(task_id in found for task_id in ids):
            time.sleep(1.0)  # a duplicate would arrive now
            return audit_by_task(cc, token)
        time.sleep(0.2)
    raise AssertionError(f"audit records missing: {set(ids) - set(found)}")


def test_workflow_submissions_are_audited_exactly_once_across_a_cc_outage(
    pair: tuple[ServiceProcess, ServiceProcess],
) -> None:
    cc, orch = pair
    login_data = login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)
    token, admin_id = str(login_data["token"]), str(login_data["user"]["id"])
    first = submit(orch, token, "production")
    found = wait_audited(cc, [first])
    entry = found[first][0]
    assert entry["action"] == "server.create"
    assert entry["resource"].startswith("servers/")
    assert entry["user_id"] == admin_id
    assert entry["result"] == "success"

    cc.stop()
    during = [submit(orch, token, f"infra-{i}") for i in range(3)]  # token cached by orch
    time.sleep(1.0)  # the outbox retries against the stopped control center
    cc.start()  # same port and database
    found = wait_audited(cc, [first, *during])
    for task_id in [first, *during]:
        assert len(found[task_id]) == 1, (task_id, found[task_id])


def test_cancel_and_checkpoint_are_audited(services: Services) -> None:
    headers = services.headers()
    task_id = submit_url(services.orch_url, services.admin_token, "prod-sleep30")
    cancel = requests.post(
        f"{services.orch_url}/tasks/{task_id}/cancel", headers=headers, timeout=10
    )
    assert cancel.status_code == 200, cancel.text
    checkpoint = requests.post(
        f"{services.orch_url}/rollback/checkpoints",
        json={"name": "before-audit-test"},
        headers=headers,
        timeout=10,
    )
    assert checkpoint.status_code == 201, checkpoint.text
    cid = checkpoint.json()["data"]
    wanted = {("task.cancel", f"tasks/{task_id}"), ("checkpoint.create", f"checkpoints/{cid}")}
    deadline = time.monotonic() + 30
    seen: set[tuple[str, str]] = set()
    while time.monotonic() < deadline and not wanted <= seen:
        for action in ("task.cancel", "checkpoint.create"):
            resp = requests.get(
                f"{services.cc_url}/audit/logs",
                params={"action": action, "limit": "1000"},
                headers=headers,
                timeout=10,
            )
            assert resp.status_code == 200, resp.text
            seen |= {(e["action"], e["resource"]) for e in resp.json()["data"]}
        time.sleep(0.2)
    assert wanted <= seen
