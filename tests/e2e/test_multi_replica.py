"""Several replicas, proven: two control centers and two orchestrators as processes on
different ports, sharing one MongoDB-compatible server and one Redis.

- a token issued by one control center works through either orchestrator;
- a logout at one control center is honoured by the other and by both orchestrators
  within the bound (DESIGN §4: 30 s introspection cache, dropped on the revocation event);
- rate limits count across replicas;
- a ``/ws`` client on one orchestrator receives events of tasks run by the other;
- 200 tasks are shared between the orchestrators with no overlapping attempts.

Orchestrator A talks to control center 1, B to control center 2."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from tests.support.cli_log import worker_pid
from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    create_user,
    login,
    orchestrator_env,
    start_control_center,
)
from tests.support.orchestrator import start_orchestrator
from tests.support.processes import ServiceProcess
from tests.support.timing import wait_fresh_window

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TASKS = 200
BATCH_LIMIT = 6
RATE_WINDOW_SECONDS = 3600
REVOCATION_BOUND_SECONDS = 30.0
TIMEOUT = 10
# Generous: a loaded 2-core machine runs the simulator ~1-3 tasks/s per replica.
TASKS_TIMEOUT = 600.0
# No task became final for this long: something is stuck, fail now.
STALL_SECONDS = 60.0


@dataclass
class Replicas:
    cc1: ServiceProcess
    cc2: ServiceProcess
    orch_a: ServiceProcess
    orch_b: ServiceProcess
    admin_token: str

    def orchestrators(self) -> list[ServiceProcess]:
        return [self.orch_a, self.orch_b]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def replicas(stack: Any) -> Iterator[Replicas]:
    stack_env = stack.env()
    cc_env = {"MONGODB_DATABASE": f"cc_multi_{uuid.uuid4().hex[:10]}"}
    orch_db = f"orch_multi_{uuid.uuid4().hex[:10]}"
    started: list[ServiceProcess] = []
    try:
        cc1 = start_control_center(stack_env, **cc_env)
        started.append(cc1)
        cc2 = start_control_center(stack_env, **cc_env)
        started.append(cc2)
        orch_env = {
            "MONGODB_DATABASE": orch_db,
            "PROVISIONING_SIM_DURATION": "0",
            "PROVISIONING_SIM_STEPS": "1",
            "ENGINE_CONCURRENCY": "8",
            "RATE_LIMIT_GENERAL_PER_MINUTE": "100000",
            "RATE_LIMIT_BATCH_PER_MINUTE": str(BATCH_LIMIT),
            # One long window: the count cannot roll over in the middle of the test.
            "RATE_LIMIT_WINDOW_SECONDS": str(RATE_WINDOW_SECONDS),
            "LOG_LEVEL": "WARNING",
            # The simulator's `#!/usr/bin/env python3` finds this interpreter directly
            # (not a version-manager shim that costs a shell per task).
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        orch_a = start_orchestrator(stack_env, **{**orchestrator_env(cc1.url), **orch_env})
        started.append(orch_a)
        orch_b = start_orchestrator(stack_env, **{**orchestrator_env(cc2.url), **orch_env})
        started.append(orch_b)
        token = str(login(cc1.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"])
        yield Replicas(cc1, cc2, orch_a, orch_b, token)
    finally:
        for proc in reversed(started):
            proc.stop()


def fresh_user(replicas: Replicas, role: str, via: ServiceProcess) -> str:
    name = f"{role}-{uuid.uuid4().hex[:8]}"
    create_user(replicas.cc2.url, replicas.admin_token, name, [role])
    return str(login(via.url, name, "User-Test-Password-1")["token"])


def test_a_token_from_either_control_center_works_through_either_orchestrator(
    replicas: Replicas,
) -> None:
    for issuer in (replicas.cc1, replicas.cc2):
        token = fresh_user(replicas, "viewer", via=issuer)
        for orch in replicas.orchestrators():
            resp = requests.get(f"{orch.url}/tasks", headers=bearer(token), timeout=TIMEOUT)
            assert resp.status_code == 200, (issuer.url, orch.url, resp.text)
        # The other control center accepts it too (one key set, in the shared database).
        for cc in (replicas.cc1, replicas.cc2):
            resp = requests.post(
                f"{cc.url}/auth/logout", headers=bearer("not-a-token"), timeout=TIMEOUT
            )
            assert resp.status_code == 401


def test_a_logout_at_one_control_center_is_honoured_everywhere_within_the_bound(
    replicas: Replicas,
) -> None:
    token = fresh_user(replicas, "viewer", via=replicas.cc1)
    # Prime every cache that could keep the token alive.
    for orch in replicas.orchestrators():
        resp = requests.get(f"{orch.url}/tasks", headers=bearer(token), timeout=TIMEOUT)
        assert resp.status_code == 200
    resp = requests.post(f"{replicas.cc2.url}/auth/logout", headers=bearer(token), timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    logged_out = time.monotonic()
    pending = {orch.url for orch in replicas.orchestrators()}
    took: dict[str, float] = {}
    while pending and time.monotonic() - logged_out < REVOCATION_BOUND_SECONDS + 5:
        for url in sorted(pending):
            resp = requests.get(f"{url}/tasks", headers=bearer(token), timeout=TIMEOUT)
            if resp.status_code == 401:
                took[url] = time.monotonic() - logged_out
                pending.discard(url)
        time.sleep(0.1)
    assert not pending, f"still accepted after {REVOCATION_BOUND_SECONDS}s: {pending}"
    assert max(took.values()) <= REVOCATION_BOUND_SECONDS, took
    print(f"\nrevocation honoured by both orchestrators after {max(took.values()):.2f}s")
    # The issuing control center refuses it as well (a second logout is unauthorized).
    resp = requests.post(f"{replicas.cc1.url}/auth/logout", headers=bearer(token), timeout=TIMEOUT)
    assert resp.status_code == 401


PLAN = {
    "name": "multi_replica_rate_limit",
    "version": "1.0.0",
    "storage_backend": "surrealdb",
    "parallel_limit": 1,
    "rollback_enabled": False,
    "operations": [
        {
            "id": "servers",
            "type": "server_batch",
            "provider": "upcloud",
            "dependencies": [],
            "server_configs": [{"name": "web-01", "plan": "1xCPU-2GB", "zone": "de-fra1"}],
        }
    ],
}


def test_rate_limits_count_across_replicas(replicas: Replicas) -> None:
    token = fresh_user(replicas, "operator", via=replicas.cc1)
    wait_fresh_window(RATE_WINDOW_SECONDS)  # all 12 requests in one window
    statuses: list[tuple[str, int]] = []
    for i in range(BATCH_LIMIT * 2):
        orch = replicas.orchestrators()[i % 2]
        resp = requests.post(
            f"{orch.url}/batch/plan", json=PLAN, headers=bearer(token), timeout=TIMEOUT
        )
        statuses.append((orch.url, resp.status_code))
        if resp.status_code == 429:
            assert int(resp.headers["Retry-After"]) > 0
            assert resp.json()["success"] is False
    codes = [code for _, code in statuses]
    assert codes == [200] * BATCH_LIMIT + [429] * BATCH_LIMIT, statuses
    # Both replicas refused: one shared count, not one per process.
    assert {url for url, code in statuses if code == 429} == {
        o.url for o in replicas.orchestrators()
    }


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


async def _watch(
    url: str, connected: asyncio.Event, done: asyncio.Event, finals: dict[str, str]
) -> None:
    # The server subscribes a /ws client before the handshake completes: once
    # connected, no later event is missed.
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        connected.set()
        while not done.is_set():
            try:
                msg = await ws.receive(timeout=0.5)
            except TimeoutError:
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            event = json.loads(msg.data)
            status = event["data"].get("status")
            if event["event_type"] == "TaskStatusChanged" and status == "completed":
                finals[event["data"]["task_id"]] = event["id"]


def _submit_all(replicas: Replicas) -> list[str]:
    ids: list[str] = []
    with requests.Session() as http:
        for i in range(TASKS):
            orch = replicas.orchestrators()[i % 2]
            resp = http.post(
                f"{orch.url}/workflows/servers/create",
                json={"infra": f"replica-{i}", "settings": "c.k"},
                headers=bearer(replicas.admin_token),
                timeout=TIMEOUT,
            )
            assert resp.status_code == 200, resp.text
            ids.append(resp.json()["data"])
    return ids


def _all_final(replicas: Replicas, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Every task's document once all are final; fails early when nothing moves."""
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    seen: dict[str, dict[str, Any]] = {}
    final = 0
    progressed = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - progressed < STALL_SECONDS:
        resp = requests.get(
            f"{replicas.orch_b.url}/tasks",
            params={"limit": "1000"},
            headers=bearer(replicas.admin_token),
            timeout=TIMEOUT,
        )
        assert resp.status_code == 200
        seen = {t["id"]: t for t in resp.json()["data"] if t["id"] in wanted}
        now_final = sum(t["status"] in ("Completed", "Failed", "Cancelled") for t in seen.values())
        if now_final > final:
            final, progressed = now_final, time.monotonic()
        if len(seen) == len(wanted) and now_final == len(wanted):
            return seen
        time.sleep(0.25)
    stuck = {t["id"]: t["status"] for t in seen.values() if t["status"] not in ("Completed",)}
    raise AssertionError(f"{final} of {TASKS} final; not final: {stuck}")


@pytest.mark.timeout(900)
def test_200_tasks_shared_without_overlap_and_events_reach_every_ws(replicas: Replicas) -> None:
    started = time.monotonic()
    pids = {replicas.orch_a.proc.pid: "A", replicas.orch_b.proc.pid: "B"}  # type: ignore[union-attr]
    ws_url = replicas.orch_a.url.replace("http://", "ws://") + "/ws"
    ws_url += f"?token={replicas.admin_token}&events=TaskStatusChanged"

    async def run() -> tuple[list[str], dict[str, str], dict[str, dict[str, Any]]]:
        connected, done = asyncio.Event(), asyncio.Event()
        finals: dict[str, str] = {}
        watcher = asyncio.create_task(_watch(ws_url, connected, done, finals))
        # Subscribed before the first task exists (a watcher that failed says why).
        waiter = asyncio.create_task(connected.wait())
        await asyncio.wait({watcher, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if watcher.done():
            waiter.cancel()
            await watcher  # raises its error
        assert connected.is_set(), "the /ws client did not connect within 30s"
        ids = await asyncio.to_thread(_submit_all, replicas)
        tasks = await asyncio.to_thread(_all_final, replicas, ids, TASKS_TIMEOUT)
        # The last events may still be in flight after the state is final.
        deadline = time.monotonic() + 10
        while set(ids) - set(finals) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        done.set()
        await watcher
        return ids, finals, tasks

    ids, finals, tasks = asyncio.run(run())
    assert all(t["status"] == "Completed" for t in tasks.values()), [
        t for t in tasks.values() if t["status"] != "Completed"
    ]

    ran_by: dict[str, str] = {}
    with requests.Session() as http:
        for task_id in ids:
            resp = http.get(
                f"{replicas.orch_a.url}/tasks/{task_id}/attempts",
                headers=bearer(replicas.admin_token),
                timeout=TIMEOUT,
            )
            attempts = resp.json()["data"]
            assert attempts, task_id
            spans = sorted((_parse(a["started_at"]), _parse(a["ended_at"])) for a in attempts)
            for (_, end), (start, _) in itertools.pairwise(spans):
                assert end <= start, f"overlapping attempts for {task_id}: {attempts}"
            assert len({a["_id"] if "_id" in a else a.get("attempt") for a in attempts}) == len(
                attempts
            )
            last = attempts[-1]
            assert last["status"] == "Completed"
            pid = worker_pid(last["worker_id"])
            ran_by[task_id] = pids.get(pid, f"?{pid}")

    counts = {name: list(ran_by.values()).count(name) for name in sorted(set(ran_by.values()))}
    assert set(counts) <= {"A", "B"}, counts
    # Both replicas did work: the second replica completed tasks, not only A.
    assert counts.get("A", 0) > 0, counts
    assert counts.get("B", 0) > 0, counts
    # Orchestrator A's /ws saw the completion of every task, B's included.
    missing = [t for t in ids if t not in finals]
    assert not missing, f"{len(missing)} completions not seen on A's /ws"
    assert any(ran_by[t] == "B" for t in finals)
    print(f"\n{TASKS} tasks on 2 replicas {counts} in {time.monotonic() - started:.1f}s")
