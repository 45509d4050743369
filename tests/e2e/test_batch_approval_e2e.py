"""Approval gates over HTTP: a batch operation of type ``approval`` holds its
dependents until an approver decides (``POST /batch/operations/{id}/approvals/{op}``)
or its timeout passes. Both services as processes; the simulator logs every run, so
the test sees that held operations never ran; events are read on ``/ws``."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from tests.e2e.conftest import Services
from tests.support.orchestrator import start_orchestrator
from tests.support.processes import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FINAL = ("Completed", "Failed", "Cancelled")


class Replica:
    def __init__(self, services: Services, proc: ServiceProcess, log: Path) -> None:
        self.services = services
        self.proc = proc
        self.log = log

    @property
    def url(self) -> str:
        return self.proc.url

    def post(self, path: str, body: Any = None, *, token: str | None = None) -> requests.Response:
        return requests.post(
            f"{self.url}{path}", json=body, headers=self.services.headers(token), timeout=60
        )

    def batch(self, batch_id: str) -> dict[str, Any]:
        resp = requests.get(
            f"{self.url}/batch/operations/{batch_id}", headers=self.services.headers(), timeout=30
        )
        assert resp.status_code == 200, resp.text
        return dict(resp.json()["data"])

    def wait(self, batch_id: str, *, until: Any = None, timeout: float = 60) -> dict[str, Any]:
        """Poll the batch until ``until(doc)`` (default: it finished)."""
        until = until or (lambda d: d["status"] in FINAL)
        deadline = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            doc = self.batch(batch_id)
            if until(doc):
                return doc
            time.sleep(0.2)
        raise AssertionError(f"batch {batch_id} not as expected after {timeout}s: {doc}")

    def ran(self, needle: str) -> list[str]:
        if not self.log.exists():
            return []
        lines = [json.loads(x) for x in self.log.read_text().splitlines() if x.endswith("}")]
        return [
            " ".join(x["argv"])
            for x in lines
            if x["result"] == "start" and needle in " ".join(x["argv"])
        ]


@pytest.fixture(scope="module")
def replica(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    log = tmp_path_factory.mktemp("sim-log") / "invocations.jsonl"
    proc = start_orchestrator(
        services.stack_env,
        **{
            **services.orch_env,
            "MONGODB_DATABASE": f"orch_approval_{uuid.uuid4().hex[:10]}",
            "PROVISIONING_SIM_LOG": str(log),
            "PROVISIONING_SIM_DURATION": "0.1",
            "BATCH_COORDINATOR_INTERVAL_SECONDS": "0.2",
        },
    )
    try:
        yield Replica(services, proc, log)
    finally:
        proc.stop()


def gated(tag: str, **gate: Any) -> dict[str, Any]:
    return {
        "name": f"gated-{tag}",
        "version": "1.0.0",
        "parallel_limit": 2,
        "operations": [
            {
                "id": "build",
                "type": "cluster_batch",
                "provider": "upcloud",
                "cluster_type": f"build-{tag}",
            },
            {
                "id": "gate",
                "type": "approval",
                "dependencies": ["build"],
                "approvers": ["operator"],
                "message": "Deploy to production?",
                **gate,
            },
            {
                "id": "deploy",
                "type": "taskserv_batch",
                "provider": "upcloud",
                "dependencies": ["gate"],
                "taskservs": [f"deploy-{tag}"],
            },
        ],
    }


def _ops(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["id"]: op for op in doc["operations"]}


def _waiting(doc: dict[str, Any]) -> bool:
    return bool(_ops(doc)["gate"]["status"] == "Running")


async def _events(
    ws: aiohttp.ClientWebSocketResponse, batch_id: str, want: str, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = await ws.receive(timeout=deadline - time.monotonic())
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        event = json.loads(msg.data)
        if event["event_type"] == want and event["data"].get("batch_id") == batch_id:
            return dict(event)
    raise AssertionError(f"no {want} for {batch_id}")


def test_approve_path_runs_the_dependents(replica: Replica) -> None:
    tag = uuid.uuid4().hex[:8]
    operator = replica.services.user_token("operator")
    viewer = replica.services.user_token("viewer")

    async def run() -> None:
        ws_url = replica.url.replace("http://", "ws://") + "/ws"
        query = f"?token={replica.services.admin_token}&events=ApprovalRequested,ApprovalDecided"
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url + query) as ws:
            resp = await asyncio.to_thread(replica.post, "/batch/execute", gated(tag))
            assert resp.status_code == 200, resp.text
            batch_id = resp.json()["data"]["batch_id"]
            requested = await _events(ws, batch_id, "ApprovalRequested")
            assert requested["data"]["operation_id"] == "gate"
            assert requested["data"]["approvers"] == ["operator"]
            assert requested["data"]["message"] == "Deploy to production?"

            doc = await asyncio.to_thread(replica.wait, batch_id, until=_waiting)
            ops = _ops(doc)
            assert ops["build"]["status"] == "Completed"
            assert ops["deploy"]["status"] == "Pending"
            assert ops["gate"]["results"]["approval"]["status"] == "waiting"
            assert replica.ran(f"deploy-{tag}") == []

            path = f"/batch/operations/{batch_id}/approvals/gate"
            # Four-eyes: the submitter (admin) may not approve; a viewer may not either.
            own = await asyncio.to_thread(replica.post, path, {"decision": "approve"})
            assert own.status_code == 403, own.text
            assert "submitter" in own.json()["error"]
            seen = await asyncio.to_thread(
                replica.post, path, {"decision": "approve"}, token=viewer
            )
            assert seen.status_code == 403
            bad = await asyncio.to_thread(replica.post, path, {"decision": "maybe"}, token=operator)
            assert bad.status_code == 422
            nogate = await asyncio.to_thread(
                replica.post,
                f"/batch/operations/{batch_id}/approvals/build",
                {"decision": "approve"},
                token=operator,
            )
            assert nogate.status_code == 404

            ok = await asyncio.to_thread(
                replica.post, path, {"decision": "approve", "comment": "go"}, token=operator
            )
            assert ok.status_code == 200, ok.text
            assert _ops(ok.json()["data"])["gate"]["status"] == "Completed"
            decided = await _events(ws, batch_id, "ApprovalDecided")
            assert decided["data"]["decision"] == "approved"
            assert decided["data"]["comment"] == "go"
            again = await asyncio.to_thread(
                replica.post, path, {"decision": "reject"}, token=operator
            )
            assert again.status_code == 409

            doc = await asyncio.to_thread(replica.wait, batch_id)
            assert doc["status"] == "Completed", doc
            assert [o["status"] for o in doc["operations"]] == ["Completed"] * 3
            assert len(replica.ran(f"deploy-{tag}")) == 1

    asyncio.run(run())


def test_reject_fails_the_gate_and_dependents_never_run(replica: Replica) -> None:
    tag = uuid.uuid4().hex[:8]
    operator = replica.services.user_token("operator")
    resp = replica.post("/batch/execute", gated(tag))
    assert resp.status_code == 200, resp.text
    batch_id = resp.json()["data"]["batch_id"]
    replica.wait(batch_id, until=_waiting)
    no = replica.post(
        f"/batch/operations/{batch_id}/approvals/gate",
        {"decision": "reject", "comment": "not today"},
        token=operator,
    )
    assert no.status_code == 200, no.text
    doc = replica.wait(batch_id)
    assert doc["status"] == "Failed"
    ops = _ops(doc)
    assert ops["gate"]["status"] == "Failed"
    assert ops["gate"]["results"]["approval"]["status"] == "rejected"
    assert ops["gate"]["results"]["approval"]["comment"] == "not today"
    assert ops["deploy"]["status"] == "Cancelled"
    assert replica.ran(f"deploy-{tag}") == []
    # A gate of a finished batch takes no decision.
    late = replica.post(
        f"/batch/operations/{batch_id}/approvals/gate", {"decision": "approve"}, token=operator
    )
    assert late.status_code == 409


def test_timeout_fails_the_gate_and_rolls_back(replica: Replica) -> None:
    tag = uuid.uuid4().hex[:8]
    body = {**gated(tag, timeout_seconds=1), "rollback_enabled": True}
    resp = replica.post("/batch/execute", body)
    assert resp.status_code == 200, resp.text

    def rolled_back(doc: dict[str, Any]) -> bool:
        rollback = doc.get("rollback") or {}
        return doc["status"] in FINAL and rollback.get("status") in FINAL

    doc = replica.wait(resp.json()["data"]["batch_id"], until=rolled_back)
    assert doc["status"] == "Failed"
    ops = _ops(doc)
    assert ops["gate"]["status"] == "Failed"
    assert ops["gate"]["results"]["approval"]["status"] == "timed_out"
    assert ops["deploy"]["status"] == "Cancelled"
    assert replica.ran(f"deploy-{tag}") == []
    # The automatic rollback undid the work before the gate.
    assert doc["rollback"]["status"] == "Completed"
    assert replica.ran(f"cluster delete build-{tag}") != []
