"""Resuming a failed batch over HTTP (``POST /batch/operations/{id}/resume``): both
services as processes, the CLI simulator failing one named item once and recording
every invocation, so the test judges what really ran again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from pymongo import MongoClient

from tests.e2e.conftest import Services
from tests.support.orchestrator import start_orchestrator
from tests.support.processes import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FINAL = ("Completed", "Failed", "Cancelled")
PROVCTL = str(Path(sys.executable).parent / "provctl")


class Replica:
    """An orchestrator of its own (own database) whose simulator fails the items named
    in ``PROVISIONING_SIM_FAIL_ONCE`` once and logs every run."""

    def __init__(self, services: Services, proc: ServiceProcess, log: Path) -> None:
        self.services = services
        self.proc = proc
        self.log = log

    @property
    def url(self) -> str:
        return self.proc.url

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        token: str | None = None,
        data: str | None = None,
    ) -> requests.Response:
        hdrs = {**self.services.headers(token), **(headers or {})}
        if data is not None:
            return requests.post(
                f"{self.url}{path}",
                data=data,
                headers={**hdrs, "Content-Type": "application/json"},
                timeout=60,
            )
        return requests.post(f"{self.url}{path}", json=body, headers=hdrs, timeout=60)

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.url}{path}", headers=self.services.headers(), timeout=30)

    def wait_batch(self, batch_id: str, *, rollback: bool = False, timeout: float = 90) -> Any:
        deadline = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            resp = self.get(f"/batch/operations/{batch_id}")
            assert resp.status_code == 200, resp.text
            doc = resp.json()["data"]
            done = doc["status"] in FINAL
            if done and rollback:
                done = bool(doc["rollback"]) and doc["rollback"]["status"] in FINAL
            if done:
                return doc
            time.sleep(0.2)
        raise AssertionError(f"batch {batch_id} not finished after {timeout}s: {doc}")

    def runs(self) -> list[dict[str, Any]]:
        """Every simulator invocation's start line (argv and task id)."""
        if not self.log.exists():
            return []
        lines = [json.loads(x) for x in self.log.read_text().splitlines() if x.endswith("}")]
        return [x for x in lines if x["result"] == "start"]


@pytest.fixture(scope="module")
def replica(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    state = tmp_path_factory.mktemp("sim-state")
    log = state / "invocations.jsonl"
    proc = start_orchestrator(
        services.stack_env,
        **{
            **services.orch_env,
            "MONGODB_DATABASE": f"orch_resume_{uuid.uuid4().hex[:10]}",
            "PROVISIONING_SIM_FAIL_ONCE": "flaky-a,flaky-b",
            "PROVISIONING_SIM_STATE_DIR": str(state),
            "PROVISIONING_SIM_LOG": str(log),
            "PROVISIONING_SIM_DURATION": "0.1",
        },
    )
    try:
        yield Replica(services, proc, log)
    finally:
        proc.stop()


def chain_batch(tag: str, flaky: str, *, rollback: bool = False) -> dict[str, Any]:
    """Four operations in a chain; the third (two servers) has ``flaky``."""
    return {
        "name": f"resume-{tag}",
        "version": "1.0.0",
        "parallel_limit": 2,
        "rollback_enabled": rollback,
        "operations": [
            {
                "id": "base",
                "type": "server_batch",
                "provider": "upcloud",
                "server_configs": [
                    {"name": f"base-1-{tag}", "plan": "1xCPU-2GB", "zone": "de-fra1"},
                    {"name": f"base-2-{tag}", "plan": "1xCPU-2GB", "zone": "de-fra1"},
                ],
            },
            {
                "id": "services",
                "type": "taskserv_batch",
                "provider": "upcloud",
                "dependencies": ["base"],
                "taskservs": [f"ts-1-{tag}", f"ts-2-{tag}"],
            },
            {
                "id": "workers",
                "type": "server_batch",
                "provider": "upcloud",
                "dependencies": ["services"],
                "server_configs": [
                    {"name": f"worker-{tag}", "plan": "1xCPU-2GB", "zone": "de-fra1"},
                    {"name": flaky, "plan": "1xCPU-2GB", "zone": "de-fra1"},
                ],
            },
            {
                "id": "cluster",
                "type": "cluster_batch",
                "provider": "upcloud",
                "dependencies": ["workers"],
                "cluster_type": f"k8s-{tag}",
            },
        ],
    }


def _args(run: dict[str, Any]) -> str:
    return " ".join(run["argv"])


def _failed_batch(replica: Replica, flaky: str, tag: str) -> dict[str, Any]:
    resp = replica.post("/batch/execute", chain_batch(tag, flaky))
    assert resp.status_code == 200, resp.text
    doc = replica.wait_batch(resp.json()["data"]["batch_id"])
    assert doc["status"] == "Failed", doc
    ops = {op["id"]: op["status"] for op in doc["operations"]}
    assert ops == {
        "base": "Completed",
        "services": "Completed",
        "workers": "Failed",
        "cluster": "Cancelled",
    }
    return dict(doc)


def test_resume_skips_completed_work_and_completes(replica: Replica) -> None:
    tag = uuid.uuid4().hex[:8]
    original = _failed_batch(replica, "flaky-a", tag)
    before = Counter(_args(r) for r in replica.runs() if tag in _args(r) or "flaky-a" in _args(r))
    # base x2, services x2, workers x2 (flaky-a failed); cluster never started.
    assert sum(before.values()) == 6, before

    key = {"Idempotency-Key": f"resume-{tag}"}
    resp = replica.post(f"/batch/operations/{original['batch_id']}/resume", headers=key)
    assert resp.status_code == 200, resp.text
    started = resp.json()["data"]
    assert started["resumed_from"] == original["batch_id"]
    assert started["status"] == "Running"
    new_id = started["batch_id"]
    assert new_id != original["batch_id"]

    # The same key and body: the same new run; the same key, another body: 409.
    again = replica.post(f"/batch/operations/{original['batch_id']}/resume", headers=key)
    assert again.status_code == 200, again.text
    assert again.json()["data"]["batch_id"] == new_id
    other = replica.post(
        f"/batch/operations/{original['batch_id']}/resume",
        {"operations": ["workers"]},
        headers=key,
    )
    assert other.status_code == 409, other.text

    doc = replica.wait_batch(new_id)
    assert doc["status"] == "Completed", doc
    assert doc["resumed_from"] == original["batch_id"]
    ops = {op["id"]: op for op in doc["operations"]}
    assert all(op["status"] == "Completed" for op in ops.values())
    assert ops["base"]["results"]["summary"] == "2/2 tasks completed (2 skipped)"
    assert len(ops["base"]["results"]["skipped_task_ids"]) == 2
    assert ops["workers"]["results"]["summary"] == "2/2 tasks completed (1 skipped)"
    assert ops["cluster"]["results"]["skipped_task_ids"] == []

    after = Counter(_args(r) for r in replica.runs() if tag in _args(r) or "flaky-a" in _args(r))
    rerun = after - before
    # Only the failed item and the never-started operation ran; nothing completed twice.
    assert sorted(rerun) == sorted(
        [
            "servers create --provider upcloud --name flaky-a --plan 1xCPU-2GB --zone de-fra1",
            f"cluster create k8s-{tag} --provider upcloud",
        ]
    ), rerun
    assert all(n == 1 for a, n in after.items() if "flaky-a" not in a), after

    # The original points at its resumption; resuming it again is refused.
    assert (
        replica.get(f"/batch/operations/{original['batch_id']}").json()["data"]["resumed_by"]
        == new_id
    )
    twice = replica.post(f"/batch/operations/{original['batch_id']}/resume")
    assert twice.status_code == 409
    assert new_id in twice.json()["error"]
    # A completed batch has nothing to resume.
    done = replica.post(f"/batch/operations/{new_id}/resume")
    assert done.status_code == 409
    assert "Nothing to resume" in done.json()["error"]


def test_resume_refusals(replica: Replica) -> None:
    tag = uuid.uuid4().hex[:8]
    assert replica.post("/batch/operations/nope/resume").status_code == 404

    # Still running: 409 (then cancelled).
    slow = chain_batch(tag, f"slow-{tag}")
    slow["operations"][0]["server_configs"][0]["name"] = f"base-sleep30-{tag}"
    resp = replica.post("/batch/execute", slow)
    assert resp.status_code == 200, resp.text
    running_id = resp.json()["data"]["batch_id"]
    refused = replica.post(f"/batch/operations/{running_id}/resume")
    assert refused.status_code == 409
    assert "Running" in refused.json()["error"]
    assert replica.post(f"/batch/operations/{running_id}/cancel").status_code == 200
    cancelled = replica.wait_batch(running_id)
    assert cancelled["status"] == "Cancelled"

    # Bad bodies: malformed JSON 400, invalid fields 422, unknown/dependent ops 422.
    path = f"/batch/operations/{running_id}/resume"
    assert replica.post(path, data="{nope").status_code == 400
    assert replica.post(path, {"operations": "base"}).status_code == 422
    assert replica.post(path, {"bogus": True}).status_code == 422
    assert replica.post(path, {"operations": []}).status_code == 422
    unknown = replica.post(path, {"operations": ["nowhere"]})
    assert unknown.status_code == 422
    assert "nowhere" in unknown.json()["error"]
    # "cluster" depends on "workers", which never completed and is not named.
    dependent = replica.post(path, {"operations": ["cluster"]})
    assert dependent.status_code == 422
    assert "workers" in dependent.json()["error"]

    # Not allowed for a viewer.
    viewer = replica.services.user_token("viewer")
    assert replica.post(path, token=viewer).status_code == 403

    # Rolled back: 409.
    failing = chain_batch(f"rb-{tag}", f"fail-{tag}", rollback=True)
    resp = replica.post("/batch/execute", failing)
    assert resp.status_code == 200, resp.text
    rolled = replica.wait_batch(resp.json()["data"]["batch_id"], rollback=True)
    assert rolled["status"] == "Failed"
    refused = replica.post(f"/batch/operations/{rolled['batch_id']}/resume")
    assert refused.status_code == 409
    assert "rolled back" in refused.json()["error"]

    # A cancelled batch resumes; a subset: only "base" (the slow item) and "services".
    resp = replica.post(path, {"operations": ["base", "services"]})
    assert resp.status_code == 200, resp.text
    subset = replica.wait_batch(resp.json()["data"]["batch_id"], timeout=120)
    ops = {op["id"]: op["status"] for op in subset["operations"]}
    assert ops == {
        "base": "Completed",
        "services": "Completed",
        "workers": "Cancelled",
        "cluster": "Cancelled",
    }
    assert subset["status"] == "Cancelled"


def test_resume_finishes_a_claim_whose_request_died(replica: Replica) -> None:
    """A resume that claimed the original and died before storing its batch leaves the
    claim behind; once it is older than the orphan window, the next resume stores the
    batch under the claimed id instead of refusing forever."""
    tag = uuid.uuid4().hex[:8]
    resp = replica.post("/batch/execute", chain_batch(f"orphan-{tag}", f"fail-{tag}"))
    assert resp.status_code == 200, resp.text
    original = replica.wait_batch(resp.json()["data"]["batch_id"])
    assert original["status"] == "Failed"
    orphan_id = str(uuid.uuid4())
    with MongoClient(replica.services.stack_env["MONGODB_URL"]) as client:
        client[replica.proc.env["MONGODB_DATABASE"]]["batch_claims"].insert_one(
            {
                "_id": f"{original['batch_id']}:resume",
                "owner": "a-replica-that-died",
                "at": datetime.now(UTC) - timedelta(minutes=5),
                "record": {
                    "batch_id": orphan_id,
                    "claimed_at": datetime.now(UTC) - timedelta(minutes=5),
                },
            }
        )
    resumed = replica.post(f"/batch/operations/{original['batch_id']}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["data"]["batch_id"] == orphan_id
    assert resumed.json()["data"]["resumed_from"] == original["batch_id"]
    assert replica.wait_batch(orphan_id)["status"] in FINAL
    again = replica.post(f"/batch/operations/{original['batch_id']}/resume")
    assert again.status_code == 409
    assert orphan_id in again.json()["error"]


def test_provctl_batch_resume_watch(replica: Replica) -> None:
    tag = uuid.uuid4().hex[:8]
    original = _failed_batch(replica, "flaky-b", tag)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVCTL_")}
    env.update(
        {
            "PROVCTL_TOKEN": replica.services.admin_token,
            "PROVISIONING_ORCHESTRATOR_URL": replica.url,
            "PROVISIONING_CONTROL_CENTER_URL": replica.services.cc_url,
            "NO_COLOR": "1",
        }
    )
    proc = subprocess.run(
        [PROVCTL, "batch", "resume", original["batch_id"], "--watch", "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    new = json.loads(proc.stdout)
    assert new["status"] == "Completed"
    # The SDK's sync client sees the link.
    from provisioning_client import ConflictError, SyncProvisioningClient

    with SyncProvisioningClient(
        orchestrator_url=replica.url,
        control_center_url=replica.services.cc_url,
        token=replica.services.admin_token,
    ) as client:
        batch = client.batches.get(new["batch_id"])
        assert batch.extra["resumed_from"] == original["batch_id"]
        with pytest.raises(ConflictError):
            client.batches.resume(original["batch_id"], idempotency_key=f"again-{tag}")
