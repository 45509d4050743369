"""The orchestrator's audit outbox against a real control center process: records
arrive in ``GET /audit/logs`` with the contract's fields; while the control center
is down nothing is lost, and after it comes back nothing is duplicated; many
records travel in one call, and an invalid one fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
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


@dataclass
class CountingSender:
    """POSTs to the control center with the orchestrator's service credentials (as
    the orchestrator does) and keeps every body sent, to count the calls."""

    remote: RemoteAuth
    bodies: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, body: Any) -> tuple[int, Any]:
        self.bodies.append(dict(body))
        return await self.remote.service.call("POST", "/audit/events", json=dict(body))


@pytest.fixture
async def sender(control_center: ServiceProcess) -> AsyncIterator[CountingSender]:
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
        yield CountingSender(remote)


@pytest.fixture
async def audit(mongo_db: Db, sender: CountingSender) -> AsyncIterator[AuditService]:
    settings = AuditSettings(retry_max_delay=0.3, poll_seconds=0.05)
    service = AuditService(mongo_db, sender, settings)
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


async def test_many_records_travel_in_few_calls(
    mongo_db: Db, sender: CountingSender, control_center: ServiceProcess
) -> None:
    # Not started: the records pile up, then passes deliver them as the worker would.
    service = AuditService(mongo_db, sender, AuditSettings(enabled=False, batch_size=40))
    await service.start()
    ids = await record(service, 100, "bulk")
    assert await service.outbox.run_once() == 40
    assert await service.outbox.run_once() == 40
    assert await service.outbox.run_once() == 20
    assert await service.outbox.run_once() == 0
    assert [len(body.get("events", [body])) for body in sender.bodies] == [40, 40, 20]
    await wait_delivered(service, ids, timeout=5)
    # Delivered records left the outbox for the history.
    assert await service.outbox.items.count_documents({}) == 0
    assert await service.outbox.history.count_documents({"status": "succeeded"}) == 100
    logs = await asyncio.to_thread(audit_logs, control_center.url, action="server.create")
    got = [entry["id"] for entry in logs]
    assert sorted(record_id for record_id in got if record_id in set(ids)) == sorted(ids)
    entry = next(e for e in logs if e["id"] == ids[41])
    assert entry["resource"] == "servers/bulk-41"
    assert entry["details"]["task_id"] == "task-bulk-41"

    # A retried batch (its answer lost) is stored once: the control center is
    # idempotent by id.
    status, body = await sender(sender.bodies[0])
    assert status == 200
    assert body["data"]["duplicates"] == 40
    logs = await asyncio.to_thread(audit_logs, control_center.url, action="server.create")
    assert len([e for e in logs if e["id"] in set(ids)]) == 100


async def test_an_invalid_record_fails_alone(
    mongo_db: Db, sender: CountingSender, control_center: ServiceProcess
) -> None:
    service = AuditService(mongo_db, sender, AuditSettings(enabled=False))
    await service.start()
    good = await record(service, 4, "fine")
    bad = await service.record(
        action="x" * 300,  # longer than the control center accepts
        resource="servers/bad",
        user_id="user-123",
        result="success",
        details={},
    )
    assert await service.outbox.run_once() == 5
    # The batch was refused (422), then every record went alone.
    assert len(sender.bodies) == 6
    assert len(sender.bodies[0]["events"]) == 5
    await wait_delivered(service, good, timeout=5)
    doc = await service.outbox.get(bad)
    assert doc is not None
    assert (doc["status"], doc["last_status_code"], doc["attempts"]) == ("failed", 422, 1)
    assert await service.outbox.items.count_documents({}) == 0
