"""``/ws?since=`` replay (``orchestrator/events/replay.py``) on the real stack: the
publisher appends every event to the Redis replay stream in the pipeline of its
publish; a replay within the stream returns exactly the missed events, in event-id
order, filtered by type, without a query on MongoDB ``events``; a ``since`` older than
the stream, a lost stream or an unreachable Redis fall back to MongoDB."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from orchestrator.events.publisher import EventPublisher
from orchestrator.events.replay import CLOCK_SKEW_MS, ReplayStream, replay
from orchestrator.events.repository import EventRepository
from provisioning_common.events import EVENTS_CHANNEL, Event, EventBus
from provisioning_common.mongo import open_client
from provisioning_common.storage_rules import ORCHESTRATOR_BOUNDED
from tests.support.command_guard import CommandGuard

LIMIT = 10000


@dataclass
class Setup:
    db: AsyncDatabase[dict[str, Any]]
    redis: Redis
    guard: CommandGuard
    repository: EventRepository
    stream: ReplayStream
    publisher: EventPublisher

    def event_queries(self) -> list[str]:
        """Commands other than inserts sent to ``events`` since the guard started."""
        return [
            r.command_name
            for r in self.guard.records
            if r.collection == "events" and r.command_name != "insert"
        ]


@pytest.fixture
async def setup(stack: Any, redis_client: Redis) -> AsyncIterator[Setup]:
    guard = CommandGuard()
    name = f"test_{uuid.uuid4().hex[:12]}"
    guard.watch(name, ORCHESTRATOR_BOUNDED)
    client = open_client(stack.mongodb_url, event_listeners=[guard])
    db = client[name]
    repository = EventRepository(db)
    stream = ReplayStream(redis_client, name, 1000)
    publisher = EventPublisher(repository, EventBus(redis_client), stream)
    try:
        yield Setup(db, redis_client, guard, repository, stream, publisher)
    finally:
        guard.stop()
        await redis_client.delete(stream.key)
        await client.drop_database(name)
        await client.close()


def old_id(seconds_ago: float, tail: str) -> str:
    return f"{time.time_ns() - int(seconds_ago * 1e9):020d}-{tail}"


async def publish_some(publisher: EventPublisher, n: int) -> list[dict[str, Any]]:
    out: list[Event] = []
    for i in range(n):
        kind = "TaskStatusChanged" if i % 2 == 0 else "TaskProgress"
        if i % 3 == 0:
            out.append(await publisher.publish(kind, {"task_id": f"t{i}", "n": i}, {"i": i}))
        else:
            out += await publisher.publish_many([(kind, {"task_id": f"t{i}", "n": i}, None)])
    return [e.to_wire() for e in out]


async def test_replay_from_the_stream_is_exactly_the_missed_events(setup: Setup) -> None:
    # Live clients get exactly what the stream holds.
    pubsub = setup.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(EVENTS_CHANNEL)
    wires = await publish_some(setup.publisher, 12)
    ours = {w["id"] for w in wires}
    live: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(live) < len(wires):
        assert time.monotonic() < deadline, "a published event never arrived"
        message = await pubsub.get_message(timeout=1)
        event = json.loads(message["data"]) if message else {}
        if event.get("id") in ours:  # the channel is shared with other tests
            live.append(event)
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert live == wires

    setup.guard.start()
    for k in (0, 4, 10, 11):
        got = await replay(setup.stream, setup.repository, wires[k]["id"], None, LIMIT)
        assert got == wires[k + 1 :], k
        # ... and exactly what MongoDB holds after the same id
        assert got == await setup.repository.since(wires[k]["id"], None, LIMIT)
    setup.guard.records.clear()
    since = wires[2]["id"]
    progress = await replay(setup.stream, setup.repository, since, ["TaskProgress"], LIMIT)
    assert progress == [w for w in wires[3:] if w["event_type"] == "TaskProgress"]
    assert await replay(setup.stream, setup.repository, since, None, 3) == wires[3:6]
    assert await replay(setup.stream, setup.repository, wires[-1]["id"], None, LIMIT) == []
    setup.guard.stop()
    assert setup.event_queries() == []  # the stream answered, MongoDB events was not read


async def test_replay_orders_by_event_id_and_tolerates_clock_skew(setup: Setup) -> None:
    """Replicas append out of id order, and their clocks may run ahead of Redis'."""
    await setup.publisher.publish("TaskStatusChanged", {"task_id": "first"})
    ahead = CLOCK_SKEW_MS / 2000  # seconds ahead of Redis, within the allowance
    ids = [old_id(-ahead, f"{i:08x}") for i in range(4)]
    since, later = ids[0], ids[1:]
    # appended in the order 3, 1, 2: a replay must still return 1, 2, 3
    for event_id in (ids[3], ids[1], ids[2], ids[0]):
        wire = Event("TaskStatusChanged", {"task_id": event_id}, id=event_id).to_wire()
        await setup.stream.publish(EVENTS_CHANNEL, [wire])
    setup.guard.start()
    got = await replay(setup.stream, setup.repository, since, None, LIMIT)
    setup.guard.stop()
    assert [e["id"] for e in got] == later
    assert setup.event_queries() == []


async def test_replay_older_than_the_stream_falls_back_to_mongodb(setup: Setup) -> None:
    # Stored before the stream existed (ten minutes ago): only MongoDB has them.
    old: list[dict[str, Any]] = [
        {
            "id": old_id(600 - i, f"{i:08x}"),
            "event_type": "TaskStatusChanged",
            "timestamp": "2025-01-01T00:00:00Z",
            "data": {"task_id": f"old{i}"},
            "metadata": {},
        }
        for i in range(3)
    ]
    await setup.repository.insert_many(old)
    recent = await publish_some(setup.publisher, 4)
    setup.guard.start()
    got = await replay(setup.stream, setup.repository, old[0]["id"], None, LIMIT)
    setup.guard.stop()
    assert got == old[1:] + recent
    assert setup.event_queries() == ["find"]  # one bounded page of MongoDB events

    # Within the stream again: no MongoDB read.
    setup.guard.start()
    assert await replay(setup.stream, setup.repository, recent[0]["id"], None, 2) == recent[1:3]
    setup.guard.stop()
    assert setup.event_queries() == []


async def test_a_trimmed_stream_answers_only_from_after_its_oldest_entry(setup: Setup) -> None:
    wires = await publish_some(setup.publisher, 6)
    await setup.redis.xtrim(setup.stream.key, maxlen=3, approximate=False)  # 0..2 gone
    setup.guard.start()
    # The stream still holds event 2's successors, but it cannot prove that nothing
    # after event 2 was trimmed (its oldest entry is as young as event 3): MongoDB.
    assert await replay(setup.stream, setup.repository, wires[2]["id"], None, LIMIT) == wires[3:]
    setup.guard.stop()
    assert setup.event_queries() == ["find"]

    # A stream whose oldest entry is older than ``since`` (minus the clock allowance)
    # answers, trimmed or not.
    key = setup.stream.key
    await setup.redis.delete(key)
    await setup.redis.xadd(key, {"id": "x", "type": "x", "event": "{}"}, id="1-0")
    await setup.redis.xadd(key, {"id": "x", "type": "x", "event": "{}"}, id="2-0")
    await setup.redis.xdel(key, "1-0")
    fresh = await publish_some(setup.publisher, 4)
    setup.guard.start()
    assert await replay(setup.stream, setup.repository, fresh[0]["id"], None, LIMIT) == fresh[1:]
    setup.guard.stop()
    assert setup.event_queries() == []


async def test_lost_stream_or_redis_down_falls_back_to_mongodb(setup: Setup) -> None:
    wires = await publish_some(setup.publisher, 5)
    since = wires[1]["id"]
    await setup.redis.delete(setup.stream.key)  # Redis lost it
    assert await replay(setup.stream, setup.repository, since, None, LIMIT) == wires[2:]
    # A stream that starts after the client's event (recreated since) is no answer.
    later = await publish_some(setup.publisher, 2)
    assert await replay(setup.stream, setup.repository, since, None, LIMIT) == wires[2:] + later

    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    try:
        dead = ReplayStream(down, setup.db.name, 1000)
        got = await asyncio.wait_for(
            replay(dead, setup.repository, since, ["TaskStatusChanged"], LIMIT), 10
        )
    finally:
        await down.aclose()
    assert got == [w for w in wires[2:] + later if w["event_type"] == "TaskStatusChanged"]


async def test_a_failed_pipeline_restarts_the_stream(setup: Setup) -> None:
    """After a pipeline that may have appended only part of its events, the next one
    starts the stream afresh, so replays from before the hole read MongoDB."""
    before = await publish_some(setup.publisher, 3)
    setup.stream._hole = True  # as after a pipeline that raised
    after = await publish_some(setup.publisher, 2)
    entries: list[tuple[str, dict[str, str]]] = await setup.redis.xrange(setup.stream.key)  # type: ignore[assignment]
    assert [fields["id"] for _, fields in entries] == [w["id"] for w in after]
    setup.guard.start()
    got = await replay(setup.stream, setup.repository, before[0]["id"], None, LIMIT)
    setup.guard.stop()
    assert got == before[1:] + after
    assert setup.event_queries() == ["find"]


async def test_stream_is_trimmed_to_about_its_length(setup: Setup, redis_client: Redis) -> None:
    stream = ReplayStream(redis_client, setup.db.name + "-short", 100)
    try:
        for start in range(0, 1000, 100):
            batch = [
                Event("TaskProgress", {"n": i}, id=f"{time.time_ns():020d}-{i:08x}").to_wire()
                for i in range(start, start + 100)
            ]
            await stream.publish(EVENTS_CHANNEL, batch)
        assert 100 <= await redis_client.xlen(stream.key) < 1000
    finally:
        await redis_client.delete(stream.key)
