"""Batch execution on the real engine (in-process), real FerretDB/MongoDB and Redis,
with a CLI simulator script that records every invocation."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from orchestrator.batches.cancellation import BatchCanceller
from orchestrator.batches.coordinator import BatchCoordinator
from orchestrator.batches.reconcile import BatchReconciler
from orchestrator.batches.repository import BatchRepository
from orchestrator.batches.schemas import BatchSubmissionSchema
from orchestrator.batches.service import BatchService
from orchestrator.batches.submission import BatchSubmitter
from orchestrator.batches.transitions import BatchTransitions
from orchestrator.engine import Engine, EngineSettings, TaskStore
from orchestrator.events import EventPublisher, EventRepository
from orchestrator.rollback.automatic import AutomaticRollback
from orchestrator.rollback.ledger import LedgerRecorder
from orchestrator.rollback.repository import RollbackRepository
from orchestrator.rollback.service import RollbackContext
from orchestrator.state.repository import SnapshotRepository
from orchestrator.tasks.service import TaskQueries
from orchestrator.workflows.repository import IdempotencyRepository
from provisioning_common.events import EVENTS_CHANNEL, EventBus
from provisioning_common.validation import validate
from tests.support.contract import CONTRACT_BATCH

SIMULATOR = '''#!{python}
"""Test CLI simulator: records argv and start/end, fails on request, reports progress."""
import json, os, sys, time
log = os.environ.get("PROVISIONING_SIM_LOG")
fail = set(filter(None, os.environ.get("PROVISIONING_SIM_FAIL", "").split(",")))
delay = float(os.environ.get("PROVISIONING_SIM_SLEEP", "0"))
start = time.time()
print("::progress 50 half way", flush=True)
time.sleep(delay)
end = time.time()
if log:
    with open(log, "a") as fh:
        fh.write(json.dumps({{"argv": sys.argv[1:], "start": start, "end": end}}) + "\\n")
if fail & set(sys.argv[1:]):
    print("simulated failure", file=sys.stderr)
    sys.exit(3)
print("ok " + " ".join(sys.argv[1:]))
'''


def write_simulator(directory: Path) -> Path:
    path = directory / "provisioning-sim"
    path.write_text(SIMULATOR.format(python=sys.executable))
    path.chmod(0o755)
    return path


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Harness:
    db: AsyncDatabase[dict[str, Any]]
    engine: Engine
    repo: BatchRepository
    snapshots: SnapshotRepository
    cli: str
    submitter: BatchSubmitter
    reconciler: BatchReconciler
    batches: BatchService
    rollback: RollbackContext
    coordinator: BatchCoordinator
    log: Path

    async def submit(self, body: Mapping[str, Any]) -> str:
        data = validate(BatchSubmissionSchema(max_parallel_limit=100), dict(body))
        result = await self.submitter.submit(data, "tester")
        self.coordinator.poke(result["_id"])
        return str(result["_id"])

    async def wait(
        self, batch_id: str, timeout: float = 30.0, until_rollback: bool = False
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            doc = await self.repo.get(batch_id)
            assert doc is not None
            done = doc["status"] in ("Completed", "Failed", "Cancelled")
            if done and until_rollback:
                done = bool(doc.get("rollback")) and doc["rollback"]["status"] in (
                    "Completed",
                    "Failed",
                )
            if done:
                return doc
            await asyncio.sleep(0.1)
        raise AssertionError(f"batch {batch_id} did not finish: {doc['status']}")

    async def cancel(self, batch_id: str) -> None:
        await self.batches.cancel(batch_id)


async def make_harness(
    db: AsyncDatabase[dict[str, Any]],
    redis: Redis,
    workdir: Path,
    *,
    env: Mapping[str, str] | None = None,
    cli: str | None = None,
    concurrency: int = 16,
    poll: float = 0.05,
    interval: float = 0.2,
    orphan_after: float = 2.0,
) -> tuple[Harness, list[Any]]:
    log = workdir / "sim.log"
    sim = cli or str(write_simulator(workdir))
    environ = {"PATH": os.environ.get("PATH", ""), "PROVISIONING_SIM_LOG": str(log), **(env or {})}
    settings = EngineSettings(
        cli=sim,
        concurrency=concurrency,
        poll_seconds=poll,
        lease_seconds=5.0,
        heartbeat_seconds=1.0,
        kill_grace_seconds=1.0,
        shutdown_grace_seconds=1.0,
    )
    events = EventRepository(db)
    publisher = EventPublisher(events, EventBus(redis))
    engine = Engine(TaskStore(db, redis), settings, publisher, environ=environ)
    repo, snapshots, ledger = BatchRepository(db), SnapshotRepository(db), RollbackRepository(db)
    for r in (repo, snapshots, ledger):
        await r.ensure_indexes()
    # The same wiring as the container's (orchestrator/container.py).
    transitions = BatchTransitions(
        repo=repo, snapshots=snapshots, publisher=publisher, worker_id=engine.worker_id
    )
    submitter = BatchSubmitter(repo=repo, engine=engine, transitions=transitions)
    ledger_recorder = LedgerRecorder(ledger, sim)
    reconciler = BatchReconciler(
        repo=repo,
        engine=engine,
        submitter=submitter,
        transitions=transitions,
        ledger=ledger_recorder,
        rollback=AutomaticRollback(
            batches=repo,
            ledger=ledger,
            snapshots=snapshots,
            engine=engine,
            publisher=publisher,
            worker_id=engine.worker_id,
        ),
        orphan_after_seconds=orphan_after,
    )
    coordinator = BatchCoordinator(
        repo=repo, reconciler=reconciler, ledger=ledger_recorder, interval=interval
    )
    batches = BatchService(
        repo=repo,
        submitter=submitter,
        canceller=BatchCanceller(
            repo=repo,
            engine=engine,
            worker_id=engine.worker_id,
            reconcile=reconciler.reconcile,
        ),
        idempotency=IdempotencyRepository(db),
        cli=sim,
        poke=coordinator.poke,
    )
    engine.add_final_listener(coordinator.on_task_final)
    await engine.start()
    coordinator.start()
    rb = RollbackContext(
        repo=ledger,
        batches=repo,
        snapshots=snapshots,
        engine=engine,
        tasks=TaskQueries(engine.store, engine.store.index),
        publisher=publisher,
        worker_id=engine.worker_id,
        wait_seconds=30.0,
        poll_seconds=0.05,
    )
    harness = Harness(
        db=db,
        engine=engine,
        repo=repo,
        snapshots=snapshots,
        cli=sim,
        submitter=submitter,
        reconciler=reconciler,
        batches=batches,
        rollback=rb,
        coordinator=coordinator,
        log=log,
    )
    return harness, [coordinator, engine]


@pytest.fixture
async def harness(
    mongo_db: AsyncDatabase[dict[str, Any]], redis_client: Redis, tmp_path: Path
) -> AsyncIterator[Harness]:
    h, stoppables = await make_harness(mongo_db, redis_client, tmp_path)
    try:
        yield h
    finally:
        for s in stoppables:
            await s.stop()


async def events_of(db: AsyncDatabase[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d async for d in db["events"].find({"event_type": kind}).sort("_id", 1)]


async def test_contract_batch_completes_in_dependency_order(
    harness: Harness, redis_client: Redis
) -> None:
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(EVENTS_CHANNEL)
    batch_id = await harness.submit(CONTRACT_BATCH)
    doc = await harness.wait(batch_id)
    heard: list[dict[str, Any]] = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        msg = await pubsub.get_message(timeout=0.2)
        if msg is not None:
            heard.append(json.loads(msg["data"]))
        elif any(
            e["data"].get("status") == "completed" and e["event_type"] == "BatchStatusChanged"
            for e in heard
        ):
            break
    await pubsub.unsubscribe()
    await pubsub.aclose()
    batch_events = [e for e in heard if e["event_type"] == "BatchStatusChanged"]
    assert [e["data"] for e in batch_events][-1] == {"batch_id": batch_id, "status": "completed"}
    assert set(batch_events[-1]) == {"id", "event_type", "timestamp", "data", "metadata"}
    assert any(e["event_type"] == "BatchProgress" for e in heard)
    assert doc["status"] == "Completed"
    assert [op["status"] for op in doc["operations"]] == ["Completed", "Completed"]
    assert all(op["progress"] == 100.0 for op in doc["operations"])
    assert doc["operations"][0]["results"]["summary"] == "2/2 tasks completed"
    calls = read_log(harness.log)
    assert len(calls) == 5
    servers = [c for c in calls if c["argv"][:2] == ["servers", "create"]]
    taskservs = [c for c in calls if c["argv"][:2] == ["taskserv", "create"]]
    assert max(c["end"] for c in servers) <= min(c["start"] for c in taskservs)
    # The two server tasks run in parallel: either may start first.
    web01 = next(c for c in servers if "web-01" in c["argv"])
    assert web01["argv"][2:] == [
        "--provider",
        "upcloud",
        "--name",
        "web-01",
        "--plan",
        "1xCPU-2GB",
        "--zone",
        "de-fra1",
    ]
    # Status changes are snapshots and events, once each.
    states = [s["state"] for s in await harness.snapshots.for_workflow(batch_id)]
    assert states == ["Pending", "Running", "Completed"]
    changed = await events_of(harness.db, "BatchStatusChanged")
    assert [e["data"]["status"] for e in changed] == ["pending", "running", "completed"]
    progress = [e["data"]["progress"] for e in await events_of(harness.db, "BatchProgress")]
    assert progress == sorted(progress)
    assert progress[-1] == 100.0
    # Every applied task is in the ledger with its compensation.
    entries, total = await harness.rollback.repo.list_ledger(0, 50)
    assert total == 5
    assert entries[0]["compensation"]["subcommand"][1] == "delete"
    await wait_inactive(harness, batch_id)


async def wait_inactive(h: Harness, batch_id: str, timeout: float = 10.0) -> None:
    """A finished batch leaves ``batches_active``, which the coordinator polls."""
    deadline = time.monotonic() + timeout
    while batch_id in await h.repo.active_set_ids():
        assert time.monotonic() < deadline, f"batch {batch_id} still marked active"
        await asyncio.sleep(0.05)


async def test_parallel_limit_bounds_overlap(
    mongo_db: AsyncDatabase[dict[str, Any]], redis_client: Redis, tmp_path: Path
) -> None:
    h, stoppables = await make_harness(
        mongo_db, redis_client, tmp_path, env={"PROVISIONING_SIM_SLEEP": "0.3"}
    )
    try:
        body = {
            "name": "limit",
            "version": "1.0.0",
            "parallel_limit": 2,
            "operations": [
                {
                    "id": "many",
                    "type": "taskserv_batch",
                    "provider": "aws",
                    "taskservs": [f"ts{i}" for i in range(10)],
                }
            ],
        }
        batch_id = await h.submit(body)
        doc = await h.wait(batch_id, timeout=60)
        assert doc["status"] == "Completed"
        calls = read_log(h.log)
        assert len(calls) == 10
        points = sorted(
            [(c["start"], 1) for c in calls] + [(c["end"], -1) for c in calls],
            key=lambda p: (p[0], p[1]),
        )
        running = peak = 0
        for _, delta in points:
            running += delta
            peak = max(peak, running)
        assert peak == 2
    finally:
        for s in stoppables:
            await s.stop()


FAILING_BATCH: dict[str, Any] = {
    "name": "failing",
    "version": "1.0.0",
    "parallel_limit": 3,
    "rollback_enabled": True,
    "operations": [
        {
            "id": "servers",
            "type": "server_batch",
            "provider": "upcloud",
            "server_configs": [
                {"name": "web-01", "plan": "p1", "zone": "z1"},
                {"name": "web-02", "plan": "p1", "zone": "z1"},
            ],
        },
        {
            "id": "cluster",
            "type": "cluster_batch",
            "provider": "upcloud",
            "dependencies": ["servers"],
            "cluster_type": "k8s",
        },
        {
            "id": "taskservs",
            "type": "taskserv_batch",
            "provider": "upcloud",
            "dependencies": ["cluster"],
            "taskservs": ["boom"],
        },
        {
            "id": "after",
            "type": "taskserv_batch",
            "provider": "upcloud",
            "dependencies": ["taskservs"],
            "taskservs": ["cilium"],
        },
    ],
}


async def test_failure_cancels_dependents_and_rolls_back_newest_first(
    mongo_db: AsyncDatabase[dict[str, Any]], redis_client: Redis, tmp_path: Path
) -> None:
    h, stoppables = await make_harness(
        mongo_db, redis_client, tmp_path, env={"PROVISIONING_SIM_FAIL": "boom"}
    )
    try:
        batch_id = await h.submit(FAILING_BATCH)
        doc = await h.wait(batch_id, until_rollback=True)
        statuses = {op["id"]: op["status"] for op in doc["operations"]}
        assert statuses == {
            "servers": "Completed",
            "cluster": "Completed",
            "taskservs": "Failed",
            "after": "Cancelled",
        }
        assert doc["status"] == "Failed"
        assert doc["rolled_back"] is True
        assert doc["rollback"]["status"] == "Completed"
        assert doc["rollback"]["operations_executed"] == 3
        deletes = [c["argv"] for c in read_log(h.log) if "delete" in c["argv"][:2]]
        assert [d[0] for d in deletes] == ["cluster", "servers", "servers"]
        assert deletes[0] == ["cluster", "delete", "k8s", "--provider", "upcloud"]
        assert {d[5] for d in deletes[1:]} == {"web-01", "web-02"}
        kinds = [
            e["event_type"]
            for e in await h.db["events"]
            .find({"event_type": {"$in": ["RollbackStarted", "RollbackCompleted"]}})
            .to_list()
        ]
        assert kinds == ["RollbackStarted", "RollbackCompleted"]
        entries = await h.rollback.repo.ledger_entries(doc["rollback"]["compensates"])
        assert all(e["compensated_by"] == doc["rollback"]["rollback_id"] for e in entries)
        # Only once its rollback is done does the batch leave the coordinator's set.
        await wait_inactive(h, batch_id)
    finally:
        for s in stoppables:
            await s.stop()


async def test_cancel_mid_batch(
    mongo_db: AsyncDatabase[dict[str, Any]], redis_client: Redis, tmp_path: Path
) -> None:
    h, stoppables = await make_harness(
        mongo_db, redis_client, tmp_path, env={"PROVISIONING_SIM_SLEEP": "5"}
    )
    try:
        batch_id = await h.submit(CONTRACT_BATCH)
        deadline = time.monotonic() + 30
        tasks = await h.engine.store.find_by_batch(batch_id)
        while not any(t["status"] == "Running" for t in tasks):
            assert time.monotonic() < deadline, f"no task of the batch running: {tasks}"
            await asyncio.sleep(0.05)
            tasks = await h.engine.store.find_by_batch(batch_id)
        await h.cancel(batch_id)  # mid-batch: a task is running
        await h.cancel(batch_id)  # twice is harmless
        doc = await h.wait(batch_id, timeout=20)
        assert doc["status"] == "Cancelled"
        assert {op["status"] for op in doc["operations"]} == {"Cancelled"}
        await h.cancel(batch_id)  # still harmless once Cancelled
        from provisioning_common.errors import Conflict

        done = await h.submit({**CONTRACT_BATCH, "name": "finished"})
        await h.wait(done, timeout=30)
        with pytest.raises(Conflict):  # a batch that finished on its own
            await h.cancel(done)
    finally:
        for s in stoppables:
            await s.stop()


async def test_lost_cancel_flag_is_repaired(
    mongo_db: AsyncDatabase[dict[str, Any]], redis_client: Redis, tmp_path: Path
) -> None:
    """FerretDB applies ``$set`` as read-then-overwrite, so a coordinator pass on another
    replica can undo ``cancel_requested`` (DESIGN §3). The cancel claim is the truth:
    the next pass writes the flag back and the batch still ends Cancelled."""
    h, stoppables = await make_harness(
        mongo_db, redis_client, tmp_path, env={"PROVISIONING_SIM_SLEEP": "5"}
    )
    try:
        batch_id = await h.submit(CONTRACT_BATCH)
        await h.cancel(batch_id)
        # Simulate the lost update.
        await mongo_db["batches"].update_one(
            {"_id": batch_id}, {"$set": {"cancel_requested": False, "status": "Running"}}
        )
        await h.reconciler.reconcile(batch_id)
        doc = await h.wait(batch_id, timeout=20)
        assert doc["cancel_requested"] is True
        assert doc["status"] == "Cancelled"
    finally:
        for s in stoppables:
            await s.stop()


async def test_submitter_crash_recovered_by_coordinator(harness: Harness) -> None:
    """A batch stored without its tasks (the submitting replica died) gets them
    created by the coordinator and completes."""
    from orchestrator.batches.model import Operation
    from orchestrator.batches.planning import new_batch
    from provisioning_common.timeutil import utcnow

    data = validate(BatchSubmissionSchema(), dict(CONTRACT_BATCH))
    ops = [Operation.from_dict(o) for o in data["operations"]]
    doc, _ = new_batch(data, ops, "crashed-batch", "tester", utcnow())
    await harness.repo.insert(doc)
    finished = await harness.wait("crashed-batch", timeout=40)
    assert finished["status"] == "Completed"
    assert len(read_log(harness.log)) == 5


async def test_two_coordinators_decide_once(
    mongo_db: AsyncDatabase[dict[str, Any]], redis_client: Redis, tmp_path: Path
) -> None:
    """Two replicas (engine + coordinator each) on one database: every task runs
    once and each status change / rollback is announced once. Each replica runs one
    task at a time and the two servers of the first operation run for a second, so
    both replicas run tasks (and their coordinators hear of their finals)."""
    env = {"PROVISIONING_SIM_FAIL": "boom", "PROVISIONING_SIM_SLEEP": "1.0"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, stop_a = await make_harness(mongo_db, redis_client, tmp_path / "a", env=env, concurrency=1)
    b, stop_b = await make_harness(
        mongo_db, redis_client, tmp_path / "b", env=env, cli=a.cli, concurrency=1
    )
    try:
        batch_id = await a.submit(FAILING_BATCH)
        b.coordinator.poke(batch_id)
        doc = await b.wait(batch_id, until_rollback=True, timeout=90)
        assert doc["status"] == "Failed"
        assert doc["rolled_back"] is True
        for kind in ("RollbackStarted", "RollbackCompleted"):
            assert len(await events_of(mongo_db, kind)) == 1
        changed = [e["data"]["status"] for e in await events_of(mongo_db, "BatchStatusChanged")]
        assert changed == ["pending", "running", "failed"]
        runs = await mongo_db["tasks"].count_documents({"batch_id": batch_id})
        attempts = await mongo_db["task_attempts"].find({}).to_list()
        assert runs == 8  # 5 run tasks + 3 compensations
        assert len(attempts) == runs - 1  # the dependent of the failure never started
        # Both replicas did work: each ran CLI processes and holds attempts.
        calls_a, calls_b = read_log(a.log), read_log(b.log)
        assert len(calls_a) + len(calls_b) == runs - 1
        assert calls_a, "replica A ran no task"
        assert calls_b, "replica B ran no task"
        workers = {x["worker_id"] for x in attempts}
        assert workers == {a.engine.worker_id, b.engine.worker_id}, workers
    finally:
        for s in [*stop_a, *stop_b]:
            await s.stop()


async def test_parallel_limit_holds_across_replicas(
    mongo_db: AsyncDatabase[dict[str, Any]], redis_client: Redis, tmp_path: Path
) -> None:
    """The batch's parallel limit (2) holds for the sum over two replicas. A runs one
    task at a time, so reaching the limit needs B: B did work, and B alone (16 at a
    time) could exceed the limit if it were not shared."""
    env = {"PROVISIONING_SIM_SLEEP": "0.3"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, stop_a = await make_harness(mongo_db, redis_client, tmp_path / "a", env=env, concurrency=1)
    b, stop_b = await make_harness(mongo_db, redis_client, tmp_path / "b", env=env, cli=a.cli)
    try:
        body = {
            "name": "spread",
            "version": "1.0.0",
            "parallel_limit": 2,
            "operations": [
                {
                    "id": "many",
                    "type": "taskserv_batch",
                    "provider": "aws",
                    "taskservs": [f"ts{i}" for i in range(10)],
                }
            ],
        }
        batch_id = await a.submit(body)
        b.coordinator.poke(batch_id)
        assert (await a.wait(batch_id, timeout=60))["status"] == "Completed"
        calls_a, calls_b = read_log(a.log), read_log(b.log)
        calls = calls_a + calls_b
        assert len(calls) == 10
        assert calls_b, "replica B ran no task"
        workers = {x["worker_id"] async for x in mongo_db["task_attempts"].find({})}
        assert b.engine.worker_id in workers, workers
        assert workers <= {a.engine.worker_id, b.engine.worker_id}, workers
        # Which replica runs what is up to their claims; the limit holds for the sum.
        points = sorted([(c["start"], 1) for c in calls] + [(c["end"], -1) for c in calls])
        running = peak = 0
        for _, delta in points:
            running += delta
            peak = max(peak, running)
        assert peak == 2
    finally:
        for s in [*stop_a, *stop_b]:
            await s.stop()
