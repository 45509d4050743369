"""The task engine against the real MongoDB-compatible server and Redis (no HTTP)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from orchestrator.engine import Compensation, Engine, EngineSettings, TaskSpec, TaskStore
from orchestrator.engine.model import new_task_id, task_document
from orchestrator.engine.store import queue_entry
from orchestrator.events import EventPublisher, EventRepository
from orchestrator.tasks.service import TaskQueries
from orchestrator.workflows.repository import IdempotencyRepository
from orchestrator.workflows.service import body_hash, submit
from provisioning_common.events import EventBus
from provisioning_common.timeutil import utcnow
from tests.support.orchestrator import SIMULATOR

FAST = EngineSettings(
    cli=str(SIMULATOR),
    poll_seconds=0.05,
    lease_seconds=2.0,
    heartbeat_seconds=0.5,
    kill_grace_seconds=1.0,
    shutdown_grace_seconds=0.5,
    concurrency=8,
    env_prefixes=("PROVISIONING_SIM_",),
)
ENV = {
    "PATH": os.environ["PATH"],
    "PROVISIONING_SIM_DURATION": "0.05",
    "PROVISIONING_SIM_STEPS": "2",
    "MONGODB_URL": "mongodb://secret@x",
}


@pytest.fixture
async def make_engine(
    mongo_db: AsyncDatabase[dict[str, Any]], redis_client: Redis
) -> AsyncIterator[Callable[..., Any]]:
    engines: list[Engine] = []

    async def make(**overrides: Any) -> Engine:
        env = overrides.pop("environ", ENV)
        publisher = EventPublisher(EventRepository(mongo_db), EventBus(redis_client))
        engine = Engine(
            TaskStore(mongo_db, redis_client), replace(FAST, **overrides), publisher, environ=env
        )
        await engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.stop()


def spec(name: str = "prod", verb: str = "create", **kw: Any) -> TaskSpec:
    return TaskSpec(
        name=f"{verb}_servers",
        subcommand=("servers", verb),
        args=("--infra", name, "--settings", "c.k"),
        **kw,
    )


async def wait_final(engine: Engine, task_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = await engine.store.get(task_id)
        if doc and doc["status"] in ("Completed", "Failed", "Cancelled"):
            return doc
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish: {await engine.store.get(task_id)}")


async def wait_dequeued(engine: Engine, task_id: str, timeout: float = 10) -> None:
    """The finishing replica removes a final task's queue entry in its next tick."""
    deadline = time.monotonic() + timeout
    while await engine.store.queue.find_one({"_id": task_id}) is not None:
        assert time.monotonic() < deadline, f"queue entry of {task_id} never removed"
        await asyncio.sleep(0.05)


async def wait_status(engine: Engine, task_id: str, status: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = await engine.store.get(task_id)
        if doc and doc["status"] == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} never reached {status}")


def processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in (proc.info["cmdline"] or [])):
                found.append(proc)
        except psutil.Error:
            continue
    return found


async def test_task_completes_with_output_progress_events_and_attempt(
    make_engine: Callable[..., Any], mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    engine = await make_engine()
    task_id = await engine.create_task(spec(compensation=Compensation(("servers", "delete"))))
    doc = await wait_final(engine, task_id)
    assert doc["status"] == "Completed", doc
    assert doc["command"] == f"{SIMULATOR} servers create"
    assert doc["args"] == ["--infra", "prod", "--settings", "c.k"]
    assert "Successfully created servers" in doc["output"]
    assert "::progress" not in doc["output"]
    assert doc["progress"] == 100.0
    assert doc["attempts"] == 1
    assert doc["started_at"] <= doc["completed_at"]
    assert doc["compensation"] == {"subcommand": ["servers", "delete"], "args": []}
    attempts = await engine.store.attempts(task_id)
    assert [a["status"] for a in attempts] == ["Completed"]
    assert attempts[0]["_id"] == f"{task_id}:1"
    assert attempts[0]["exit_code"] == 0
    # The final event follows the final document (ENGINE_API.md "Ordering"): wait for it.
    deadline = time.monotonic() + 10
    while True:
        events = [
            e async for e in mongo_db["events"].find({"data.task_id": task_id}).sort("_id", 1)
        ]
        statuses = [e["data"]["status"] for e in events if e["event_type"] == "TaskStatusChanged"]
        if statuses[-1:] == ["completed"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert statuses == ["pending", "running", "completed"]
    assert events[-1]["metadata"]["task_status"] == "Completed"
    assert any(e["event_type"] == "TaskProgress" for e in events)
    assert any(e["event_type"] == "TaskOutput" for e in events)


async def test_failing_task_and_missing_cli(make_engine: Callable[..., Any]) -> None:
    engine = await make_engine()
    failed = await wait_final(engine, await engine.create_task(spec("web-fail")))
    assert failed["status"] == "Failed"
    assert failed["error"].startswith("Command exited with code 1")
    assert "failed for web-fail" in failed["error"]
    missing = await make_engine(cli="/nonexistent/provisioning")
    await engine.stop()
    doc = await wait_final(missing, await missing.create_task(spec()))
    assert doc["status"] == "Failed"
    assert doc["error"] == "Provisioning CLI not found: /nonexistent/provisioning"


async def test_cancel_running_task_leaves_no_process(make_engine: Callable[..., Any]) -> None:
    engine = await make_engine()
    marker = f"cancel-sleep30-{os.getpid()}-{time.monotonic_ns()}"
    task_id = await engine.create_task(spec(marker))
    await wait_status(engine, task_id, "Running")
    for _ in range(100):
        if processes_with(marker):
            break
        await asyncio.sleep(0.05)
    assert processes_with(marker)
    assert await engine.cancel(task_id) == "requested"
    doc = await wait_final(engine, task_id, timeout=5)
    assert doc["status"] == "Cancelled"
    assert doc["error"] == "Cancelled by user"
    assert processes_with(marker) == []
    assert await engine.cancel(task_id) == "final"
    assert await engine.cancel("0" * 8 + "-0000-0000-0000-" + "0" * 12) == "not_found"


async def test_cancel_pending_task_is_immediate(make_engine: Callable[..., Any]) -> None:
    engine = await make_engine(enabled=False)
    task_id = await engine.create_task(spec())
    assert await engine.cancel(task_id) == "cancelled"
    doc = await engine.store.get(task_id)
    assert doc is not None
    assert doc["status"] == "Cancelled"
    assert await engine.store.attempts(task_id) == []


async def test_timeout_kills_the_process_group(make_engine: Callable[..., Any]) -> None:
    engine = await make_engine(kill_grace_seconds=0.2)
    marker = f"timeout-sleep30-{time.monotonic_ns()}"
    doc = await wait_final(engine, await engine.create_task(spec(marker, timeout_seconds=0.5)))
    assert doc["status"] == "Failed"
    assert doc["error"] == "Timed out after 0.5 seconds"
    assert processes_with(marker) == []
    attempts = await engine.store.attempts(doc["_id"])
    assert attempts[0]["status"] == "TimedOut"


async def test_dependencies_gate_and_cascade(make_engine: Callable[..., Any]) -> None:
    engine = await make_engine()
    ok_id, bad_id = "10000000-0000-4000-8000-000000000001", "10000000-0000-4000-8000-000000000002"
    ids = await engine.create_tasks(
        [
            spec("after-ok", dependencies=(ok_id,)),
            spec("after-bad", dependencies=(bad_id,)),
            spec("first", task_id=ok_id),
            spec("first-fail", task_id=bad_id),
        ]
    )
    after_ok, after_bad = await wait_final(engine, ids[0]), await wait_final(engine, ids[1])
    first = await engine.store.get(ok_id)
    assert after_ok["status"] == "Completed"
    assert first is not None
    assert after_ok["started_at"] >= first["completed_at"]
    assert after_bad["status"] == "Cancelled"
    assert after_bad["error"] == f"Dependency {bad_id} Failed"
    assert await engine.store.attempts(ids[1]) == []


async def test_concurrency_group_limits_running_tasks(make_engine: Callable[..., Any]) -> None:
    engine = await make_engine(environ={**ENV, "PROVISIONING_SIM_DURATION": "0.3"})
    other = await make_engine(environ={**ENV, "PROVISIONING_SIM_DURATION": "0.3"})
    ids = await engine.create_tasks(
        [spec(f"grp-{i}", concurrency_key="batch:x", concurrency_limit=2) for i in range(6)]
    )
    for task_id in ids:
        assert (await wait_final(engine, task_id))["status"] == "Completed"
    spans = []
    for task_id in ids:
        (att,) = await other.store.attempts(task_id)
        spans.append((att["started_at"], att["ended_at"]))
    for start, _ in spans:
        overlapping = sum(1 for s, e in spans if s <= start < e)
        assert overlapping <= 2
    assert await engine.store.slots_for_key("batch:x") == []


async def test_output_cap_keeps_tail(tmp_path: Path, make_engine: Callable[..., Any]) -> None:
    cli = tmp_path / "noisy"
    cli.write_text("#!/bin/sh\nfor i in $(seq 1 3000); do echo line-$i; done\n")
    cli.chmod(0o755)
    engine = await make_engine(cli=str(cli), output_max_bytes=4096)
    task_id = await engine.create_task(spec())
    doc = await wait_final(engine, task_id)
    assert doc["status"] == "Completed"
    output = await engine.store.get_output(task_id)
    assert output is not None
    assert output.endswith("line-3000\n")
    assert "truncated" in output
    assert "line-1\n" not in output
    assert len(output) < 4200
    # The task document keeps only a summary (its last KiB), so lists stay small.
    assert len(doc["output"]) == 1024
    assert output.endswith(doc["output"])


async def test_clean_environment(tmp_path: Path, make_engine: Callable[..., Any]) -> None:
    cli = tmp_path / "printenv"
    cli.write_text("#!/bin/sh\nenv\n")
    cli.chmod(0o755)
    engine = await make_engine(cli=str(cli))
    task_id = await engine.create_task(spec())
    doc = await wait_final(engine, task_id)
    assert "PROVISIONING_SIM_DURATION=0.05" in doc["output"]
    # The CLI learns which task and attempt it runs (docs/cli-contract.md).
    assert f"PROVISIONING_TASK_ID={task_id}\n" in doc["output"]
    assert "PROVISIONING_ATTEMPT=1\n" in doc["output"]
    assert "MONGODB_URL" not in doc["output"]


async def test_retry_with_backoff(make_engine: Callable[..., Any]) -> None:
    engine = await make_engine(retry_backoff_seconds=0.1)
    doc = await wait_final(engine, await engine.create_task(spec("x-fail", retries=1)))
    assert doc["status"] == "Failed"
    attempts = await engine.store.attempts(doc["_id"])
    assert [a["status"] for a in attempts] == ["Failed", "Failed"]
    assert (attempts[1]["started_at"] - attempts[0]["ended_at"]).total_seconds() >= 0.09


async def test_graceful_shutdown_hands_back_then_another_replica_finishes(
    make_engine: Callable[..., Any],
) -> None:
    first = await make_engine(shutdown_grace_seconds=0.2)
    task_id = await first.create_task(spec("handback-sleep3"))
    await wait_status(first, task_id, "Running")
    await first.stop()
    doc = await first.store.get(task_id)
    assert doc is not None
    assert doc["status"] == "Pending"
    second = await make_engine()
    doc = await wait_final(second, task_id, timeout=20)
    assert doc["status"] == "Completed"
    attempts = await second.store.attempts(task_id)
    assert [a["status"] for a in attempts] == ["Released", "Completed"]


async def test_lease_takeover_after_owner_stops_heartbeating(
    make_engine: Callable[..., Any],
) -> None:
    owner = await make_engine(lease_seconds=1.0, heartbeat_seconds=0.3)
    task_id = await owner.create_task(spec("takeover-sleep2"))
    await wait_status(owner, task_id, "Running")
    # Simulate a frozen owner: its background loops stop (no heartbeat, no finish).
    for loop in owner._loops:
        loop.cancel()
    for run in list(owner.runs.values()):
        run.reason = "lost"
        run.stop.set()
    owner._loops = []
    survivor = await make_engine(lease_seconds=1.0, heartbeat_seconds=0.3)
    doc = await wait_final(survivor, task_id, timeout=20)
    assert doc["status"] == "Completed"
    assert doc["attempts"] == 2
    first, second = await survivor.store.attempts(task_id)
    assert first["status"] == "Lost"
    assert second["status"] == "Completed"
    assert first["ended_at"] <= second["started_at"]


async def test_task_shown_running_after_its_final_is_repaired(
    make_engine: Callable[..., Any],
) -> None:
    """The chaos finding: a final record says Completed, the only attempt ended, but a
    lost write left the document Running and its queue entry in place. The engine
    restores the invariant (final in its document, gone from the queue) by itself."""
    engine = await make_engine()
    task_id = await engine.create_task(spec())
    doc = await wait_final(engine, task_id)
    assert doc["status"] == "Completed"
    await wait_dequeued(engine, task_id)  # so the entry put back below is not removed
    store = engine.store
    long_ago = doc["completed_at"] - timedelta(seconds=60)
    await store.update_attempt(f"{task_id}:1", {"ended_at": long_ago})
    await store.finals.update_one({"_id": task_id}, {"$set": {"completed_at": long_ago}})
    await store.tasks.update_one({"_id": task_id}, {"$set": {"status": "Running"}})
    await store.enqueue([queue_entry(doc)])
    await store.index.move(task_id, "Running")

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        current = await store.get(task_id)
        queued = await store.queue.find_one({"_id": task_id})
        if current is not None and current["status"] == "Completed" and queued is None:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"not repaired: {await store.get(task_id)}")
    assert await store.count(status="Running") == 0
    assert await store.count(status="Completed") == 1
    # Nothing ran again: still the one attempt.
    assert [a["_id"] for a in await store.attempts(task_id)] == [f"{task_id}:1"]
    # The final is announced again, for consumers that missed it (at least once).
    finals = await store.db["events"].count_documents(
        {"data.task_id": task_id, "data.status": "completed"}
    )
    assert finals == 2


async def test_task_running_without_attempt_or_final_goes_back_to_the_queue(
    make_engine: Callable[..., Any],
) -> None:
    """An owner that ended its attempt and died before deciding a retry or the final
    leaves the task Running with nothing running: it is handed back and run again."""
    engine = await make_engine()
    task_id = await engine.create_task(spec())
    doc = await wait_final(engine, task_id)
    await wait_dequeued(engine, task_id)  # so the entry put back below is not removed
    store = engine.store
    await store.finals.delete_one({"_id": task_id})
    await store.update_attempt(
        f"{task_id}:1",
        {"status": "Failed", "ended_at": doc["completed_at"] - timedelta(seconds=60)},
    )
    await store.tasks.update_one({"_id": task_id}, {"$set": {"status": "Running"}})
    engine._finals.pop(task_id, None)
    await store.enqueue([queue_entry(doc)])
    engine.wake()

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        attempts = await store.attempts(task_id)
        current = await store.get(task_id)
        if len(attempts) == 2 and current is not None and current["status"] == "Completed":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"not run again: {await store.get(task_id)}")


async def test_task_created_without_queue_entry_is_found_by_the_sweep(
    make_engine: Callable[..., Any],
) -> None:
    """A creator that died between inserting the task and its queue entry: the task is
    indexed (before the insert), so the sweep over the index queues and runs it."""
    engine = await make_engine()
    await engine._sweep_queue()  # the first sweep (a full read) is behind us
    doc = task_document(spec(), engine.defaults, utcnow())
    await engine.store.insert_tasks([doc])  # indexed and stored, never queued
    await engine._sweep_queue()
    done = await wait_final(engine, str(doc["_id"]))
    assert done["status"] == "Completed"


async def test_idempotent_retry_creates_the_task_a_dead_first_request_claimed(
    make_engine: Callable[..., Any], mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    """The first request claimed its Idempotency-Key and died before creating the task:
    the retry returns the same id and the task exists and runs."""
    engine = await make_engine()
    keys = IdempotencyRepository(mongo_db)
    tasks = TaskQueries(engine.store, engine.store.index)
    body = {"infra": "prod", "settings": "c.k"}
    common = {"path": "/workflows/servers/create", "body": body, "user": "u-1"}
    # What the dead request left: the key, pointing at a task that was never inserted.
    key_id = hashlib.sha256(b"u-1\x00key-1").hexdigest()
    orphan = new_task_id()
    assert await keys.claim(key_id, body_hash(common["path"], body), orphan)

    task_id = await submit(engine, tasks, keys, spec(), idempotency_key="key-1", **common)
    assert task_id == orphan
    assert (await wait_final(engine, task_id))["status"] == "Completed"
    # A further retry returns it again and creates nothing more.
    assert await submit(engine, tasks, keys, spec(), idempotency_key="key-1", **common) == orphan
    assert await engine.store.count() == 1


async def test_running_task_the_index_still_shows_pending_is_taken_over(
    make_engine: Callable[..., Any],
) -> None:
    """The scheduler asks the task index which queued tasks are Pending, so it reads only
    the others when it looks for expired leases. An owner that died between its Running
    write and the index mirror leaves the index saying Pending: the claim path then reads
    the task, sees Running, and the takeover pass watches it from then on."""
    owner = await make_engine(lease_seconds=1.0, heartbeat_seconds=0.3)
    task_id = await owner.create_task(spec("index-lag-sleep2"))
    await wait_status(owner, task_id, "Running")
    for loop in owner._loops:  # frozen: no heartbeat, no finish
        loop.cancel()
    for run in list(owner.runs.values()):
        run.reason = "lost"
        run.stop.set()
    owner._loops = []
    await owner.store.index.move(task_id, "Pending")  # the mirror write that never happened
    survivor = await make_engine(lease_seconds=1.0, heartbeat_seconds=0.3)
    doc = await wait_final(survivor, task_id, timeout=20)
    assert doc["status"] == "Completed"
    first, second = await survivor.store.attempts(task_id)
    assert (first["status"], second["status"]) == ("Lost", "Completed")


async def test_pending_task_the_index_shows_running_is_still_claimed(
    make_engine: Callable[..., Any],
) -> None:
    """The other way round (a replica died between handing a task back and the mirror):
    the takeover pass reads the task, finds it Pending, and it is claimed as usual."""
    creator = await make_engine(enabled=False)
    task_id = await creator.create_task(spec())
    await creator.store.index.move(task_id, "Running")
    engine = await make_engine()
    doc = await wait_final(engine, task_id)
    assert doc["status"] == "Completed"
    assert doc["attempts"] == 1


async def test_cancel_request_whose_redis_copy_was_lost_still_stops_the_run(
    make_engine: Callable[..., Any],
) -> None:
    """Owners look for cancel requests in Redis's copy every half second and in MongoDB
    (the truth) every few seconds: a request stored while Redis lost its copy stops the
    run too, a little later."""
    engine = await make_engine()
    marker = f"lost-copy-sleep30-{os.getpid()}-{time.monotonic_ns()}"
    task_id = await engine.create_task(spec(marker))
    await wait_status(engine, task_id, "Running")
    # As ``request_cancel`` stores it, minus the copy in Redis.
    await engine.store.cancels.insert_one(
        {"_id": task_id, "reason": "Cancelled by user", "requested_at": utcnow()}
    )
    doc = await wait_final(engine, task_id, timeout=15)
    assert doc["status"] == "Cancelled"
    assert doc["error"] == "Cancelled by user"
    assert processes_with(marker) == []
