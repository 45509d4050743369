"""The orchestrator's audit outbox against a real control center process: records
arrive in ``GET /audit/logs`` with the contract's fields; while the control center
is down nothing is lost, and after it comes back nothing is duplicated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import requests
from pymongo.asynchronous.database import AsyncDatabase

from orchestrator.audit.service import AuditService, AuditSettings
from provisioning_common.remote_auth import RemoteAuth, RemoteAuthConfig
from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    ORCHESTRATOR_CLIENT_ID,
    ORCHESTRATOR_CLIENT_SECRET,
    auth_header,
    login,
    start_control_center,
)
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.e2e
Db = AsyncDatabase[dict[str, Any]]


@pytest.fixture
def control_center(stack: Any) -> Any:
    cc = start_control_center(stack.env())
    try:
        yield cc
    finally:
        cc.stop()


@pytest.fixture
async def audit(mongo_db: Db, control_center: ServiceProcess) -> AsyncIterator[AuditService]:
    async with aiohttp.ClientSession() as session:
        remote = RemoteAuth(
            RemoteAuthConfig(
                control_center_url=control_center.url,
                client_id=ORCHESTRATOR_CLIENT_ID,
                client_secret=ORCHESTRATOR_CLIENT_SECRET,
                http_timeout=2.0,
            ),
            session,
        )

        async def send(event: Any) -> tuple[int, Any]:
            return await remote.service.call("POST", "/audit/events", json=dict(event))

        settings = AuditSettings(retry_max_delay=0.3, poll_seconds=0.05)
        service = AuditService(mongo_db, send, settings)
        await service.start()
        try:
            yield service
        finally:
            await service.stop()


def audit_logs(cc_url: str, **params: str) -> list[dict[str, Any]]:
    token = login(cc_url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"]
    resp = requests.get(
        f"{cc_url}/audit/logs",
        params={"limit": "1000", **params},
        headers=auth_header(token),
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Total-Count"]
    data: list[dict[str, Any]] = resp.json()["data"]
    return data


async def wait_delivered(service: AuditService, ids: list[str], timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        done = await service.outbox.count({"_id": {"$in": ids}, "status": "succeeded"})
        if done == len(ids):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"only {done} of {len(ids)} audit records delivered")
        await asyncio.sleep(0.1)


async def record(service: AuditService, n: int, tag: str) -> list[str]:
    ids = []
    for i in range(n):
        ids.append(
            await service.record(
                action="server.create",
                resource=f"servers/{tag}-{i}",
                user_id="user-123",
                result="success",
                details={"task_id": f"task-{tag}-{i}", "infra": "production"},
            )
        )
    return ids


async def test_records_arrive_with_contract_fields(
    audit: AuditService, control_center: ServiceProcess
) -> None:
    ids = await record(audit, 3, "up")
    await wait_delivered(audit, ids)
    logs = await asyncio.to_thread(audit_logs, control_center.url, action="server.create")
    by_id = {entry["id"]: entry for entry in logs}
    assert set(ids) <= set(by_id)
    entry = by_id[ids[0]]
    assert entry["action"] == "server.create"
    assert entry["resource"] == "servers/up-0"
    assert entry["user_id"] == "user-123"
    assert entry["result"] == "success"
    assert entry["details"]["task_id"] == "task-up-0"
    assert entry["timestamp"].endswith("Z")


async def test_control_center_down_nothing_lost_nothing_duplicated(
    audit: AuditService, control_center: ServiceProcess
) -> None:
    before = await record(audit, 2, "before")
    await wait_delivered(audit, before)
    await asyncio.to_thread(control_center.stop)
    during = await record(audit, 5, "during")
    await asyncio.sleep(1.0)  # several failed attempts while it is down
    assert await audit.outbox.count({"_id": {"$in": during}, "status": "succeeded"}) == 0
    failed_attempts = await audit.outbox.attempts.count_documents(
        {"item_id": {"$in": during}, "status": "failed"}
    )
    assert failed_attempts >= len(during)
    await asyncio.to_thread(control_center.start)  # same port, same database
    await wait_delivered(audit, during)
    logs = await asyncio.to_thread(audit_logs, control_center.url)
    ids = [entry["id"] for entry in logs]
    for record_id in before + during:
        assert ids.count(record_id) == 1, record_id
