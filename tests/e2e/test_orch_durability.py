"""Durability across processes: kill -9 then takeover; two replicas share tasks while
one of them is SIGKILLed mid-run; SIGTERM hands running tasks back.

Each kill is made while the killed replica is known to run a task (its attempt
document: worker_id of that process, status Running; or the recording CLI's log: a
run started by that process, not ended), and the proofs come from what ran."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from pymongo import MongoClient

from tests.e2e.conftest import Services
from tests.support.cli_log import Run, replica_env, worker_pid, write_cli
from tests.support.processes import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TIMEOUT = 10
FINAL = ("Completed", "Failed", "Cancelled")


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _attempts(services: Services, url: str, task_id: str) -> list[dict[str, Any]]:
    resp = requests.get(
        f"{url}/tasks/{task_id}/attempts", headers=services.headers(), timeout=TIMEOUT
    )
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


def _wait_running_on(
    services: Services, proc: ServiceProcess, task_id: str, timeout: float = 30
) -> dict[str, Any]:
    """The task's current attempt once it is Running on ``proc`` (its worker_id)."""
    assert proc.proc is not None
    deadline = time.monotonic() + timeout
    attempts: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        attempts = _attempts(services, proc.url, task_id)
        if attempts and attempts[-1]["status"] == "Running":
            assert worker_pid(attempts[-1]["worker_id"]) == proc.proc.pid, attempts
            return attempts[-1]
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} not running on pid {proc.proc.pid}: {attempts}")


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
        timeout=TIMEOUT,
    )
    assert resp.status_code == 200, resp.text
    task_id = resp.json()["data"]
    running = _wait_running_on(services, first, task_id)  # the kill hits a running task
    assert running["attempt"] == 1
    first.kill()  # SIGKILL to its process group: no shutdown code runs
    second = start_orchestrator_process(**env)
    task = services.wait_task(task_id, url=second.url, timeout=60)
    assert task["status"] == "Completed"
    assert task["attempts"] == 2
    attempts = _attempts(services, second.url, task_id)
    assert [a["status"] for a in attempts] == ["Lost", "Completed"]
    assert attempts[0]["worker_id"] == running["worker_id"]  # the one that was killed
    assert second.proc is not None
    assert worker_pid(attempts[1]["worker_id"]) == second.proc.pid
    assert _parse(attempts[0]["ended_at"]) <= _parse(attempts[1]["started_at"])


SHARED_TASKS = 100
HALF = SHARED_TASKS // 2
RUN_SECONDS = 1.0
LEASE_SECONDS = 3
KILL_WAIT = 60.0
FINAL_WAIT = 180.0
CLOSE_WAIT = 60.0  # a stale attempt is closed a lease after its lease expired


def _submit(services: Services, http: requests.Session, orch: ServiceProcess, i: int) -> str:
    resp = http.post(
        f"{orch.url}/workflows/servers/create",
        json={"infra": f"shared-{i}", "settings": "c.k"},
        headers=services.headers(),
        timeout=TIMEOUT,
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["data"])


@pytest.mark.timeout(420)
def test_two_replicas_share_100_tasks_and_a_kill_9_leaves_no_overlapping_runs(
    services: Services,
    start_orchestrator_process: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    """Replicas A and B share 100 tasks; B is SIGKILLed while it runs tasks (the CLI
    log shows runs B started and never ended; their attempt documents show B's
    worker_id, Running) and is not restarted: A takes its tasks over. From the CLI log:
    no two runs of a task overlap (a killed run ends at the kill); from the attempt
    documents: both replicas completed tasks and B's killed attempts are Lost."""
    cli, log = write_cli(tmp_path, run=RUN_SECONDS)
    db_name = f"orch_{uuid.uuid4().hex[:12]}"
    env = replica_env(cli, lease_seconds=LEASE_SECONDS, database=db_name)
    a, b = start_orchestrator_process(**env), start_orchestrator_process(**env)
    assert a.proc is not None
    assert b.proc is not None
    a_pid, b_pid = a.proc.pid, b.proc.pid
    client: MongoClient[dict[str, Any]] = MongoClient(
        services.stack_env["MONGODB_URL"], serverSelectionTimeoutMS=10000
    )
    try:
        db = client[db_name]
        ids: list[str] = []
        with requests.Session() as http:
            # The first half on both replicas, so B has work when it is killed.
            ids += [_submit(services, http, (a, b)[i % 2], i) for i in range(HALF)]
            deadline = time.monotonic() + KILL_WAIT
            # B is killed once it has completed a task and is running others.
            while time.monotonic() < deadline:
                in_progress = log.running_on(b_pid)
                completed_on_b = [
                    x
                    for x in db.task_attempts.find({"status": "Completed"}, {"worker_id": 1})
                    if worker_pid(str(x["worker_id"])) == b_pid
                ]
                if completed_on_b and in_progress:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError(f"B (pid {b_pid}) completed no task within {KILL_WAIT}s")
            # The engine's record agrees: those attempts are B's and Running.
            aids = [f"{r.task}:{r.attempt}" for r in in_progress]
            docs = {str(d["_id"]): d for d in db.task_attempts.find({"_id": {"$in": aids}})}
            running_on_b = [
                aid
                for aid in aids
                if aid in docs
                and docs[aid]["status"] == "Running"
                and worker_pid(str(docs[aid]["worker_id"])) == b_pid
            ]
            assert running_on_b, f"no attempt Running on B among {aids}: {docs}"
            b.kill()  # SIGKILL to its process group: no shutdown code runs
            killed_at = time.time()
            # The second half to A only (B is gone).
            ids += [_submit(services, http, a, i) for i in range(HALF, SHARED_TASKS)]

        deadline = time.monotonic() + FINAL_WAIT
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            docs = {str(d["_id"]): d for d in db.tasks.find({"_id": {"$in": ids}}, {"status": 1})}
            statuses = {t: str(d["status"]) for t, d in docs.items()}
            if len(statuses) == len(ids) and all(s in FINAL for s in statuses.values()):
                break
            time.sleep(0.25)
        not_completed = {t: statuses.get(t) for t in ids if statuses.get(t) != "Completed"}
        assert not not_completed, f"{len(not_completed)} tasks not Completed: {not_completed}"
        # Every attempt gets an end: one B left Running (B decided the final and died
        # before closing it) is closed Lost by A once its lease is long gone.
        deadline = time.monotonic() + CLOSE_WAIT
        while True:
            attempts = list(db.task_attempts.find({"task_id": {"$in": ids}}))
            still = [x for x in attempts if x["status"] == "Running"]
            if not still:
                break
            assert time.monotonic() < deadline, f"attempts still Running: {still}"
            time.sleep(0.25)
        finals = {str(d["_id"]): d for d in db.task_finals.find({"_id": {"$in": ids}})}
    finally:
        client.close()

    # What really ran, from the CLI's log.
    runs = [r for r in log.read() if r.task in set(ids)]
    assert {r.ppid for r in runs} <= {a_pid, b_pid}, {r.ppid for r in runs}
    killed = [r for r in runs if r.end is None and r.ppid == b_pid]
    assert killed, "no run of B was cut short by the kill"
    assert all(r.start < killed_at for r in runs if r.ppid == b_pid)
    unended = [r for r in runs if r.end is None and r.ppid != b_pid]
    assert not unended, f"runs without an end on the live replica: {unended}"
    spans: dict[str, list[tuple[float, float, Run]]] = {}
    for run in runs:
        end = run.end if run.end is not None else killed_at
        spans.setdefault(run.task, []).append((run.start, end, run))
    overlaps = []
    for task_spans in spans.values():
        task_spans.sort(key=lambda s: s[0])
        for (_, end, first), (start, _, second) in itertools.pairwise(task_spans):
            if start < end:
                overlaps.append((first, second))
    assert not overlaps, f"overlapping runs of one task: {overlaps[:5]}"
    never_ran = [t for t in ids if not any(r.end is not None for _, _, r in spans.get(t, []))]
    assert not never_ran, f"tasks with no finished CLI run: {never_ran}"

    # The engine's records: both replicas completed tasks; B's killed runs are Lost
    # attempts taken over (and completed) by A; no two attempts of a task overlap.
    by_aid = {str(x["_id"]): x for x in attempts}
    completed_by = Counter(
        worker_pid(str(x["worker_id"])) for x in attempts if x["status"] == "Completed"
    )
    assert completed_by[a_pid] > 0, completed_by
    assert completed_by[b_pid] > 0, completed_by
    for run in killed:
        lost = by_aid[f"{run.task}:{run.attempt}"]
        assert lost["status"] == "Lost", lost
        assert worker_pid(str(lost["worker_id"])) == b_pid, lost
        after = by_aid[f"{run.task}:{run.attempt + 1}"]
        assert after["status"] == "Completed", after
        assert worker_pid(str(after["worker_id"])) == a_pid, after
    per_task: dict[str, list[dict[str, Any]]] = {}
    for x in attempts:
        per_task.setdefault(str(x["task_id"]), []).append(x)
    assert set(per_task) == set(ids), "tasks without attempts"
    closed_late = 0
    for task_id, xs in per_task.items():
        xs.sort(key=lambda x: int(x["attempt"]))
        final = finals[task_id]
        assert final["status"] == "Completed", final
        if xs[-1]["status"] != "Completed":
            # B decided the final, then died before closing its attempt.
            detail = json.dumps([xs, final], default=str)
            assert xs[-1]["status"] == "Lost", detail
            assert worker_pid(str(xs[-1]["worker_id"])) == b_pid, detail
            assert final["worker_id"] == xs[-1]["worker_id"], detail
            closed_late += 1
        for before, after_ in itertools.pairwise(xs):
            assert before["ended_at"] <= after_["started_at"], (task_id, xs)
    print(
        f"\n{SHARED_TASKS} tasks on 2 replicas, B killed with {len(killed)} runs in progress; "
        f"completed attempts A {completed_by[a_pid]}, B {completed_by[b_pid]}; "
        f"CLI runs {len(runs)}, final decided by B but attempt closed by A {closed_late}"
    )


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
        timeout=TIMEOUT,
    )
    assert resp.status_code == 200, resp.text
    task_id = resp.json()["data"]
    running = _wait_running_on(services, first, task_id)  # SIGTERM finds it running
    assert first.stop() == 0  # SIGTERM: graceful, exits cleanly
    second = start_orchestrator_process(**env)
    task = services.wait_task(task_id, url=second.url, timeout=60)
    assert task["status"] == "Completed"
    attempts = _attempts(services, second.url, task_id)
    assert [a["status"] for a in attempts] == ["Released", "Completed"]
    assert attempts[0]["worker_id"] == running["worker_id"]
