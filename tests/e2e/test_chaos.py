"""Chaos: two orchestrator replicas share one database and Redis while replica B is
killed with SIGKILL (and restarted) several times, each time while it runs a task.

``PROVISIONING_CLI`` is a tiny script that appends a JSON line per start and end
(``PROVISIONING_TASK_ID``, ``PROVISIONING_ATTEMPT``, epoch time, its parent = the
replica's pid) to a log, so the runs are judged from what really ran, not from the
engine's own records:

- every task is Completed, agrees with its ``task_finals`` record and has no
  ``task_queue`` entry left;
- no two runs of one task overlap in time (a run killed with its replica has no end:
  it ends when that replica was killed);
- the batch's ``parallel_limit`` is never exceeded;
- both replicas ran tasks; reruns (at-least-once) are counted and printed."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from pymongo import MongoClient

from tests.e2e.conftest import Services
from tests.support.cli_log import CliLog, Run, replica_env, write_cli
from tests.support.processes import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TASKS = 200
MAX_TASKS = 1000
SUBMIT_SECONDS = 150.0
BATCH_ITEMS = 10
BATCH_LIMIT = 2
KILLS = 3
MIN_RUNS_BEFORE_KILL = 5
RUN_SECONDS = 0.3
# Batch items run longer so the batch is still running while B is killed.
BATCH_RUN_SECONDS = 1.0
LEASE_SECONDS = 3
RESTART_AFTER = 1.0
KILL_WAIT = 40.0  # for B to be running a task before a kill
FINAL_WAIT = 120.0
TIMEOUT = 10


def _running_on(log: CliLog, pid: int) -> list[Run]:
    """B's runs in progress, once it has started a few (so each incarnation works a bit)."""
    runs = [r for r in log.read() if r.ppid == pid]
    return [r for r in runs if r.end is None] if len(runs) >= MIN_RUNS_BEFORE_KILL else []


BATCH = {
    "name": "chaos_batch",
    "version": "1.0.0",
    "parallel_limit": BATCH_LIMIT,
    "rollback_enabled": False,
    "operations": [
        {
            "id": "servers",
            "type": "server_batch",
            "provider": "upcloud",
            "dependencies": [],
            "server_configs": [
                {"name": f"chaos-slow-{i:02d}", "plan": "1xCPU-2GB", "zone": "de-fra1"}
                for i in range(BATCH_ITEMS)
            ],
        }
    ],
}


@dataclass
class Submitter:
    """Submits tasks alternately to A and B (to A while B is down) until at least
    ``TASKS`` are in and the chaos is over, so B always finds work after a restart."""

    services: Services
    replicas: tuple[ServiceProcess, ServiceProcess]
    chaos_over: threading.Event = field(default_factory=threading.Event)
    abort: threading.Event = field(default_factory=threading.Event)
    ids: list[str] = field(default_factory=list)
    via: Counter[str] = field(default_factory=Counter)
    retried: int = 0
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="chaos-submitter", daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the submitter did not stop"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            deadline = time.monotonic() + SUBMIT_SECONDS
            with requests.Session() as http:
                i = 0
                while not self.abort.is_set() and (
                    len(self.ids) < TASKS or not self.chaos_over.is_set()
                ):
                    assert len(self.ids) < MAX_TASKS, "the chaos took too long"
                    assert time.monotonic() < deadline, "submitting took too long"
                    self._one(http, i)
                    i += 1
        except BaseException as exc:  # reported by join()
            self.error = exc

    def _one(self, http: requests.Session, i: int) -> None:
        # One key per task: a retry on A of a request B died answering is the same task.
        headers = {**self.services.headers(), "Idempotency-Key": f"chaos-{uuid.uuid4().hex}"}
        for name, orch in (("AB"[i % 2], self.replicas[i % 2]), ("A", self.replicas[0])):
            try:
                resp = http.post(
                    f"{orch.url}/workflows/servers/create",
                    json={"infra": f"chaos-{i}", "settings": "c.k"},
                    headers=headers,
                    timeout=TIMEOUT,
                )
            except requests.RequestException:
                self.retried += 1
                continue  # B is down (or died answering): A takes it
            assert resp.status_code == 200, resp.text
            self.ids.append(str(resp.json()["data"]))
            self.via[name] += 1
            return
        raise AssertionError(f"task {i} could not be submitted")


def _wait_batch_tasks(services: Services, url: str, batch_id: str, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = requests.get(
            f"{url}/batch/operations/{batch_id}", headers=services.headers(), timeout=TIMEOUT
        )
        if resp.status_code == 200:
            doc = resp.json()["data"]
            if doc["status"] in ("Completed", "Failed", "Cancelled"):
                assert doc["status"] == "Completed", json.dumps(doc)[:3000]
                return [str(t) for t in doc["operations"][0]["results"]["task_ids"]]
        time.sleep(0.25)
    raise AssertionError(f"batch {batch_id} not final after {timeout}s: {doc}")


def _max_concurrency(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])  # ends first
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    return peak


@pytest.mark.timeout(300)
def test_kill_9_one_replica_repeatedly_under_load(
    services: Services,
    start_orchestrator_process: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    cli, log = write_cli(
        tmp_path, run=RUN_SECONDS, slow_tag="chaos-slow", slow_run=BATCH_RUN_SECONDS
    )
    db_name = f"orch_chaos_{uuid.uuid4().hex[:10]}"
    # Each kill can cost a task one attempt, and the restarted replica (the one with
    # free slots) tends to take the lost tasks over, so one task can be lost on every
    # kill (seen: attempts 1-3 each killed on B): with KILLS attempts lost it must still
    # have one left to complete.
    env = {
        **replica_env(cli, lease_seconds=LEASE_SECONDS, database=db_name),
        "TASK_MAX_ATTEMPTS": str(KILLS + 2),
    }
    a = start_orchestrator_process(**env)
    b = start_orchestrator_process(**env)
    assert a.proc is not None
    assert b.proc is not None
    a_pid = a.proc.pid
    b_pids = [b.proc.pid]
    killed_at: dict[int, float] = {}  # B's pid -> when it was SIGKILLed

    resp = requests.post(
        f"{b.url}/batch/execute", json=BATCH, headers=services.headers(), timeout=TIMEOUT
    )
    assert resp.status_code == 200, resp.text
    batch_id = str(resp.json()["data"]["batch_id"])
    submitter = Submitter(services, (a, b))
    submitter.start()

    try:
        for _ in range(KILLS):
            assert b.proc is not None
            pid = b.proc.pid
            deadline = time.monotonic() + KILL_WAIT
            while not _running_on(log, pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            running = _running_on(log, pid)
            assert running, f"replica B (pid {pid}) ran no task within {KILL_WAIT}s"
            b.kill()  # SIGKILL to its process group; the CLIs die with it (PDEATHSIG)
            killed_at[pid] = time.time()
            time.sleep(RESTART_AFTER)  # the chaos schedule, not a synchronisation
            b.port = 0  # a fresh port: the old one may linger
            b.start()
            assert b.proc is not None
            b_pids.append(b.proc.pid)
    except BaseException:
        submitter.abort.set()
        raise
    finally:
        submitter.chaos_over.set()
    chaos_done = time.monotonic() - started
    submitter.join(SUBMIT_SECONDS)
    submitted = time.monotonic() - started

    client: MongoClient[dict[str, Any]] = MongoClient(
        services.stack_env["MONGODB_URL"], serverSelectionTimeoutMS=10000
    )
    try:
        db = client[db_name]
        batch_ids = _wait_batch_tasks(services, a.url, batch_id, FINAL_WAIT)
        assert len(batch_ids) == BATCH_ITEMS
        # Every task of this database: a submission B died answering was retried on A
        # with the same Idempotency-Key, so it must not have made a second task.
        every = sorted(str(d["_id"]) for d in db.tasks.find({}, {"_id": 1}))
        ids = submitter.ids
        assert len(set(ids)) == len(ids)
        answered = set(ids) | set(batch_ids)
        assert set(every) - answered == set(), "tasks nobody was told about"
        assert answered - set(every) == set(), "answered task ids that do not exist"
        deadline = time.monotonic() + FINAL_WAIT
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            docs = db.tasks.find({"_id": {"$in": every}}, {"status": 1})
            statuses = {str(d["_id"]): str(d["status"]) for d in docs}
            if len(statuses) == len(every) and all(
                s in ("Completed", "Failed", "Cancelled") for s in statuses.values()
            ):
                break
            time.sleep(0.5)
        not_final = {t: statuses.get(t) for t in every if statuses.get(t) != "Completed"}
        if not_final:
            in_queue = {
                str(d["_id"]) for d in db.task_queue.find({"_id": {"$in": list(not_final)}})
            }
            detail = {
                t: (s, "queued" if t in in_queue else "NOT in task_queue")
                for t, s in not_final.items()
            }
            raise AssertionError(f"{len(not_final)} tasks not Completed: {detail}")
        all_final = time.monotonic() - started

        finals = {
            str(d["_id"]): str(d["status"]) for d in db.task_finals.find({"_id": {"$in": every}})
        }
        disagree = {t: (statuses[t], finals.get(t)) for t in every if finals.get(t) != statuses[t]}
        assert not disagree, f"task vs task_finals: {disagree}"
        queued = [str(d["_id"]) for d in db.task_queue.find({"_id": {"$in": every}})]
        assert not queued, f"final tasks still in task_queue: {queued}"
        attempts = list(db.task_attempts.find({"task_id": {"$in": every}}))
    finally:
        client.close()

    # What really ran, from the CLI's log.
    runs = [r for r in log.read() if r.task in set(every)]
    spans: dict[str, list[tuple[float, float, Run]]] = defaultdict(list)
    unended: list[Run] = []
    for run in runs:
        end = run.end if run.end is not None else killed_at.get(run.ppid)
        if end is None:
            unended.append(run)  # ran by a replica that was never killed: must have ended
            end = float("inf")
        spans[run.task].append((run.start, end, run))
    assert not unended, f"runs without an end on a live replica: {unended}"
    never_ran = [t for t in every if not any(r.end is not None for _, _, r in spans[t])]
    assert not never_ran, f"tasks with no finished CLI run: {never_ran}"

    double_runs = []
    for task_id, task_spans in spans.items():
        task_spans.sort(key=lambda s: s[0])
        for (_, end, first), (start, _, second) in itertools.pairwise(task_spans):
            if start < end:
                double_runs.append((task_id, first, second))
    batch_peak = _max_concurrency([(s, e) for t in batch_ids for s, e, _ in spans[t]])
    reruns = {t: len(s) for t, s in spans.items() if len(s) > 1}

    def replica(pid: int) -> str:
        return "A" if pid == a_pid else "B" if pid in b_pids else f"?{pid}"

    cli_starts = Counter(replica(r.ppid) for r in runs)
    by_worker = Counter(replica(int(str(x["worker_id"]).split(":")[1])) for x in attempts)
    killed_runs = sum(1 for r in runs if r.end is None)
    print(
        f"\nchaos: {len(every)} tasks ({len(ids)} submitted, via {dict(submitter.via)}, "
        f"{submitter.retried} retried on A) "
        f"incl. a batch of {len(batch_ids)} (limit {BATCH_LIMIT}) on 2 "
        f"replicas, B killed {len(killed_at)}x; CLI starts {dict(cli_starts)}, attempts "
        f"{dict(by_worker)}, runs killed with B {killed_runs}, reruns {len(reruns)} "
        f"(max {max(reruns.values(), default=1)} runs/task), concurrent double runs "
        f"{len(double_runs)}, batch peak concurrency {batch_peak}; submitted "
        f"{submitted:.1f}s, chaos done {chaos_done:.1f}s, all final {all_final:.1f}s"
    )
    assert not double_runs, f"overlapping runs of one task: {double_runs[:5]}"
    assert batch_peak <= BATCH_LIMIT, f"batch ran {batch_peak} at once (limit {BATCH_LIMIT})"
    assert cli_starts["A"] > 0, cli_starts
    assert cli_starts["B"] > 0, cli_starts
    assert by_worker["A"] > 0, by_worker
    assert by_worker["B"] > 0, by_worker
    assert set(cli_starts) <= {"A", "B"}, cli_starts
