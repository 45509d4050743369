"""The storage rule on the hot path (DESIGN §3 cost rule, ``docs/storage.md``).

The real orchestrator app (``create_app``) and the real control center app run
in-process against the test MongoDB-compatible server and Redis, with a
:class:`~tests.support.command_guard.CommandGuard` on every client they open. After a
warm-up round (start-up sweeps, index creation, first token and policy fetches), the
guard records one more round of the steady state: submit a workflow → claim → run the
CLI → finalize → events → audit outbox → control center → webhook outbox → receiver
→ ``/ws`` live and ``/ws?since=`` replay, plus the reads a client makes meanwhile
(``GET /tasks/{id}``, ``GET /tasks``). The recording lasts long enough to include
the services' periodic loops.

Then: every recorded command must be an insert, an exact-``_id`` read/update/delete,
or anything against a collection bounded by in-flight work
(``provisioning_common.storage_rules``); and those bounded collections must be empty
again once the work is done (that is what "bounded by in-flight work" means).

Known violations when this test was written (all orchestrator; the control center
had none), all fixed since; the failure message lists anything that comes back, each
with the code that sent it:

- ``events: find {_id: {$gt: str}, event_type: {$in: [str]}} sort {_id: 1}`` at
  events/repository.py:EventRepository.since <- webhooks/service.py:WebhookService.scan_once
  (every webhook scan): the scan now drains the bounded ``event_inbox``;
- ``events: find {_id: {$gt: str}} sort {_id: 1}`` at events/repository.py:EventRepository.since
  <- events/ws.py:websocket (``/ws?since=``): the replay now reads the Redis replay
  stream (events/replay.py), MongoDB only for what is older than it;
- the batch coordinator's ``batches`` ``$or`` poll (BatchRepository.active_ids, now the
  bounded ``batches_active``) and its ``tasks {batch_id}`` read
  (BatchRepository.task_states, now the Redis task index).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from control_center.app import create_app as create_control_center
from control_center.settings import Settings as ControlCenterSettings
from orchestrator.app import create_app as create_orchestrator
from orchestrator.deps import CONTAINER
from orchestrator.settings import Settings as OrchestratorSettings
from provisioning_common.mongo import open_client
from provisioning_common.storage_rules import CONTROL_CENTER_BOUNDED, ORCHESTRATOR_BOUNDED
from tests.support.command_guard import CommandGuard, command_guard
from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    ORCHESTRATOR_CLIENT_ID,
    ORCHESTRATOR_CLIENT_SECRET,
    TEST_ENV,
)

__all__ = ["command_guard"]  # the fixture, used by the tests below

pytestmark = pytest.mark.slow

# The CLI: progress, a line of output, success. Run directly (no shell in between).
CLI = """#!/bin/sh
echo "::progress 50 half way"
echo "created $*"
"""
WEBHOOK_SECRET = "storage-rule-secret"
FINAL = ("Completed", "Failed", "Cancelled")
# Long enough to include the periodic loops (queue-depth gauge every 5 s, batch
# coordinator every second, outbox and webhook polls).
RECORD_AT_LEAST_SECONDS = 6.0


def _true_when(check: Callable[[], bool]) -> Callable[[], Awaitable[bool | None]]:
    async def probe() -> bool | None:
        return True if check() else None

    return probe


async def eventually(probe: Callable[[], Awaitable[Any]], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Receiver:
    """The webhook endpoint: records what it is sent."""

    deliveries: list[dict[str, Any]] = field(default_factory=list)

    async def hook(self, request: web.Request) -> web.Response:
        self.deliveries.append(json.loads(await request.read()))
        return web.Response(status=204)

    def for_task(self, task_or_batch_id: str) -> list[dict[str, Any]]:
        return [d for d in self.deliveries if task_or_batch_id in json.dumps(d)]


@dataclass
class Services:
    orch: TestClient[web.Request, web.Application]
    cc: TestClient[web.Request, web.Application]
    receiver: Receiver
    token: str
    orch_db: str
    cc_db: str
    mongodb_url: str

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}


@pytest.fixture
async def services(
    stack: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command_guard: CommandGuard,
) -> AsyncIterator[Services]:
    suffix = uuid.uuid4().hex[:10]
    orch_db, cc_db = f"orch_rule_{suffix}", f"cc_rule_{suffix}"
    command_guard.watch(orch_db, ORCHESTRATOR_BOUNDED)
    command_guard.watch(cc_db, CONTROL_CENTER_BOUNDED)

    receiver = Receiver()
    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver.hook)
    hook_server = TestServer(hook_app)
    await hook_server.start_server()

    cc_settings = ControlCenterSettings.from_env(
        {**stack.env(), **TEST_ENV, "MONGODB_DATABASE": cc_db}
    )
    cc: TestClient[web.Request, web.Application] = TestClient(
        TestServer(create_control_center(cc_settings))
    )
    await cc.start_server()

    cli = tmp_path / "provisioning"
    cli.write_text(CLI)
    cli.chmod(0o755)
    config = tmp_path / "orchestrator.toml"
    config.write_text(
        "[webhooks]\n"
        "enabled = true\n"
        "poll_seconds = 0.1\n"
        "backoff_base_seconds = 0.1\n"
        "backoff_max_seconds = 0.5\n"
        "endpoints = [\n"
        f'  {{ url = "{hook_server.make_url("/hook")}", '
        f'events = ["task.completed", "task.failed", "batch.completed", "batch.failed"], '
        f'secret = "{WEBHOOK_SECRET}" }},\n'
        "]\n"
    )
    env = {
        **stack.env(),
        "MONGODB_DATABASE": orch_db,
        "CONTROL_CENTER_URL": str(cc.make_url("")).rstrip("/"),
        "SERVICE_CLIENT_ID": ORCHESTRATOR_CLIENT_ID,
        "SERVICE_CLIENT_SECRET": ORCHESTRATOR_CLIENT_SECRET,
        "PROVISIONING_CLI": str(cli),
        "PROVISIONING_CONFIG": str(config),
        "ENGINE_POLL_SECONDS": "0.1",
        "ENGINE_LEASE_SECONDS": "10",
        "ENGINE_HEARTBEAT_SECONDS": "1",
        "TASK_KILL_GRACE_SECONDS": "1",
        "ENGINE_SHUTDOWN_GRACE_SECONDS": "1",
        "AUDIT_POLL_SECONDS": "0.1",
        "WS_HEARTBEAT_SECONDS": "2",
        "RATE_LIMIT_GENERAL_PER_MINUTE": "10000",
        "RATE_LIMIT_BATCH_PER_MINUTE": "10000",
        "LOG_LEVEL": "WARNING",
    }
    for name, value in env.items():  # features read their settings from the environment
        monkeypatch.setenv(name, value)
    orch: TestClient[web.Request, web.Application] = TestClient(
        TestServer(create_orchestrator(OrchestratorSettings.from_env(env)))
    )
    await orch.start_server()
    try:
        resp = await cc.post(
            "/auth/login", json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}
        )
        assert resp.status == 200, await resp.text()
        token = str((await resp.json())["data"]["token"])
        yield Services(orch, cc, receiver, token, orch_db, cc_db, stack.mongodb_url)
    finally:
        command_guard.stop()
        await orch.close()
        await cc.close()
        await hook_server.close()
        mongo = open_client(stack.mongodb_url)
        try:
            for name in (orch_db, cc_db):
                await mongo.drop_database(name)
        finally:
            await mongo.close()


async def _next_event(ws: Any, timeout: float) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == WSMsgType.TEXT, f"/ws closed or failed: {msg}"
    event: dict[str, Any] = json.loads(msg.data)
    return event


async def _events_until_final(
    ws: Any, key: str, value: str, final_type: str, timeout: float = 30.0
) -> list[str]:
    """Ids of the events whose ``data[key]`` is ``value`` received on ``ws``, up to
    the ``final_type`` event with a final status."""
    deadline = time.monotonic() + timeout
    ids: list[str] = []
    while True:
        event = await _next_event(ws, max(0.1, deadline - time.monotonic()))
        data = event.get("data") or {}
        if data.get(key) != value:
            continue
        ids.append(str(event["id"]))
        if event["event_type"] == final_type and str(data.get("status")).capitalize() in FINAL:
            return ids


async def _replay(svc: Services, since: str, key: str, value: str, final_type: str) -> list[str]:
    """What a client reconnecting with ``?since=`` is sent."""
    ws = await svc.orch.ws_connect(f"/ws?token={svc.token}&since={since}")
    try:
        return await _events_until_final(ws, key, value, final_type)
    finally:
        await ws.close()


async def _wait_audited(svc: Services, resource: str) -> None:
    mongo = open_client(svc.mongodb_url)  # the test's own client: not recorded
    try:

        async def audited() -> bool:
            found = await mongo[svc.cc_db]["audit_logs"].find_one({"resource": resource})
            return found is not None

        await eventually(audited, f"the audit record of {resource} at the control center")
    finally:
        await mongo.close()


async def one_round(svc: Services, label: str) -> str:
    """One task through the whole steady state; returns its id once every effect
    (final status, ``/ws`` events, webhook, audit record) has been seen."""
    infra = f"{label}-{uuid.uuid4().hex[:8]}"
    ws = await svc.orch.ws_connect(f"/ws?token={svc.token}")
    try:
        resp = await svc.orch.post(
            "/workflows/servers/create",
            json={"infra": infra, "settings": "config.k", "wait": True},
            headers=svc.headers(**{"Idempotency-Key": f"{label}-{uuid.uuid4().hex}"}),
        )
        assert resp.status == 200, await resp.text()
        task_id = str((await resp.json())["data"])
        live = await _events_until_final(ws, "task_id", task_id, "TaskStatusChanged")
    finally:
        await ws.close()

    async def task_final() -> dict[str, Any] | None:
        got = await svc.orch.get(f"/tasks/{task_id}", headers=svc.headers())
        assert got.status == 200, await got.text()
        doc: dict[str, Any] = (await got.json())["data"]
        return doc if doc["status"] in FINAL else None

    task = await eventually(task_final, f"task {task_id} to be final")
    assert task["status"] == "Completed", task
    for query in ("limit=10", "status=Completed&limit=10"):
        listed = await svc.orch.get(f"/tasks?{query}", headers=svc.headers())
        assert listed.status == 200, await listed.text()

    # A client reconnecting after the first event gets the rest replayed.
    replayed = await _replay(svc, live[0], "task_id", task_id, "TaskStatusChanged")
    assert replayed == live[1:], (live, replayed)

    async def delivered() -> bool:
        return bool(svc.receiver.for_task(task_id))

    await eventually(delivered, f"the webhook of task {task_id}")
    await _wait_audited(svc, f"servers/{infra}")  # the submission's server.create record
    return task_id


async def batch_round(svc: Services, label: str) -> str:
    """One batch (two servers, then a task service on them) through the steady state."""
    name = f"{label}-{uuid.uuid4().hex[:8]}"
    body = {
        "name": name,
        "version": "1.0.0",
        "storage_backend": "surrealdb",
        "parallel_limit": 2,
        "rollback_enabled": True,
        "operations": [
            {
                "id": "servers",
                "type": "server_batch",
                "provider": "upcloud",
                "dependencies": [],
                "server_configs": [
                    {"name": "web-01", "plan": "1xCPU-2GB", "zone": "de-fra1"},
                    {"name": "web-02", "plan": "1xCPU-2GB", "zone": "us-nyc1"},
                ],
            },
            {
                "id": "taskservs",
                "type": "taskserv_batch",
                "provider": "upcloud",
                "dependencies": ["servers"],
                "taskservs": ["kubernetes"],
            },
        ],
    }
    ws = await svc.orch.ws_connect(f"/ws?token={svc.token}")
    try:
        resp = await svc.orch.post(
            "/batch/execute",
            json=body,
            headers=svc.headers(**{"Idempotency-Key": f"{label}-{uuid.uuid4().hex}"}),
        )
        assert resp.status == 200, await resp.text()
        batch_id = str((await resp.json())["data"]["batch_id"])
        live = await _events_until_final(ws, "batch_id", batch_id, "BatchStatusChanged")
    finally:
        await ws.close()

    async def batch_final() -> dict[str, Any] | None:
        got = await svc.orch.get(f"/batch/operations/{batch_id}", headers=svc.headers())
        assert got.status == 200, await got.text()
        doc: dict[str, Any] = (await got.json())["data"]
        return doc if doc["status"] in FINAL else None

    batch = await eventually(batch_final, f"batch {batch_id} to be final")
    assert batch["status"] == "Completed", batch
    replayed = await _replay(svc, live[0], "batch_id", batch_id, "BatchStatusChanged")
    assert replayed == live[1:], (live, replayed)

    async def delivered() -> bool:
        return bool(svc.receiver.for_task(batch_id))

    await eventually(delivered, f"the batch.completed webhook of batch {batch_id}")
    await _wait_audited(svc, f"batches/{name}")
    return batch_id


async def undrained(svc: Services, timeout: float = 10.0) -> list[str]:
    """Bounded collections still holding documents once no work is in flight."""
    mongo = open_client(svc.mongodb_url)
    try:
        db = svc.orch_db
        deadline = time.monotonic() + timeout
        while True:
            left: list[str] = []
            for name in sorted(ORCHESTRATOR_BOUNDED):
                docs = [d async for d in mongo[db][name].find({}).limit(5)]
                if docs:
                    total = await mongo[db][name].count_documents({})
                    states = sorted({str(d.get("status", "-")) for d in docs})
                    left.append(f"{name}: {total} document(s) left, status {states}")
            if not left or time.monotonic() > deadline:
                return left
            await asyncio.sleep(0.2)
    finally:
        await mongo.close()


async def _record(
    svc: Services, guard: CommandGuard, round_trip: Callable[[Services, str], Awaitable[str]]
) -> None:
    """A warm-up round (start-up sweeps, first token, JWKS and policy fetches), then a
    recorded one; fails with every violation and every undrained bounded collection."""
    await round_trip(svc, "warm-up")
    engine = svc.orch.server.app[CONTAINER].engine
    await eventually(_true_when(lambda: engine.swept), "the engine's start-up sweep")
    guard.start()
    started = time.monotonic()
    await round_trip(svc, "recorded")
    await asyncio.sleep(max(0.0, RECORD_AT_LEAST_SECONDS - (time.monotonic() - started)))
    guard.stop()

    assert guard.records, "the guard recorded nothing: is it attached to the clients?"
    left = await undrained(svc)
    problems = []
    if guard.violations():
        problems.append(guard.report())
    if left:
        problems.append(
            "collections declared bounded by in-flight work (storage_rules."
            "ORCHESTRATOR_BOUNDED) still hold documents with no work in flight:\n  "
            + "\n  ".join(left)
        )
    assert not problems, "\n\n".join(problems)


async def test_workflow_steady_state_keeps_the_storage_rule(
    services: Services, command_guard: CommandGuard
) -> None:
    await _record(services, command_guard, one_round)


async def test_batch_steady_state_keeps_the_storage_rule(
    services: Services, command_guard: CommandGuard
) -> None:
    await _record(services, command_guard, batch_round)
