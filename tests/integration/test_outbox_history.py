"""The outbox keeps only items still to deliver (DESIGN §3 cost rule): finished items
move to ``<name>_history``; the delivery path touches the history and the attempt
records by exact ``_id`` only (checked with a command listener on the real
server); crashes between the two writes of a move, duplicate enqueues, redelivery,
items left by the earlier version, listings over both collections, batch delivery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from provisioning_common.outbox import AttemptResult, Outbox, OutboxItem, RetryPolicy
from provisioning_common.timeutil import utcnow

Db = AsyncDatabase[dict[str, Any]]
POLICY = RetryPolicy(
    max_attempts=3,
    base_delay=0.01,
    max_delay=0.02,
    attempt_timeout=1,
    lease_seconds=2,
    poll_interval=0.05,
    batch_size=50,
)


class Recorder(monitoring.CommandListener):
    """Every command sent to one database while recording."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.recording = False
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.recording and event.database_name == self.database:
            self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def on(self, collection: str) -> list[tuple[str, dict[str, Any]]]:
        return [(n, c) for n, c in self.commands if c.get(n) == collection]


def filters(name: str, command: Mapping[str, Any]) -> list[Any]:
    """The filter of each statement of a command (None: not a filtered command)."""
    if name == "find":
        return [command.get("filter") or {}]
    if name == "update":
        return [s.get("q") or {} for s in command.get("updates") or []]
    if name == "delete":
        return [s.get("q") or {} for s in command.get("deletes") or []]
    if name in ("count", "distinct", "findAndModify", "findandmodify"):
        return [command.get("query") or {}]
    return [None]


def is_point(query: Any) -> bool:
    return isinstance(query, Mapping) and list(query) == ["_id"] and isinstance(query["_id"], str)


def off_rule(recorder: Recorder, collection: str) -> list[str]:
    """Commands on ``collection`` that are neither inserts nor exact-``_id`` statements."""
    bad = []
    for name, command in recorder.on(collection):
        if name == "insert":
            continue
        for query in filters(name, command):
            if not is_point(query):
                bad.append(f"{name} {query!r} sort={command.get('sort')!r}")
    return bad


@pytest.fixture
async def recorded(stack: Any, mongo_db: Db) -> AsyncIterator[tuple[Db, Recorder]]:
    """``mongo_db`` through a client of our own that records its commands."""
    recorder = Recorder(mongo_db.name)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        stack.mongodb_url, tz_aware=True, event_listeners=[recorder]
    )
    try:
        yield client[mongo_db.name], recorder
    finally:
        await client.close()


class Endpoint:
    """Answers per item: fails the first ``fail_first`` attempts of items whose
    payload asks for it; records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def answer(self, item: OutboxItem, attempt: int) -> AttemptResult:
        if attempt <= int(item.payload.get("fail_first", 0)):
            return AttemptResult(ok=False, status_code=500, error="HTTP 500")
        if item.payload.get("reject"):
            return AttemptResult(ok=False, status_code=422, error="HTTP 422", retry=False)
        return AttemptResult(ok=True, status_code=200)

    async def one(self, item: OutboxItem, attempt: int) -> AttemptResult:
        self.calls.append([item.id])
        return self.answer(item, attempt)

    async def batch(self, batch: Sequence[tuple[OutboxItem, int]]) -> list[AttemptResult]:
        self.calls.append([item.id for item, _ in batch])
        return [self.answer(item, attempt) for item, attempt in batch]

    def delivered(self) -> list[str]:
        return [i for call in self.calls for i in call]


def make_outbox(db: Db, endpoint: Endpoint, *, batch: bool, name: str = "t") -> Outbox:
    if batch:
        return Outbox(db, name, policy=POLICY, deliver_batch=endpoint.batch)
    return Outbox(db, name, endpoint.one, POLICY)


async def drain(outbox: Outbox, timeout: float = 10.0) -> None:
    """Run passes until the outbox is empty."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await outbox.items.find_one({}) is not None:
        if asyncio.get_running_loop().time() > deadline:
            left = await outbox.items.find({}).to_list(None)
            raise AssertionError(f"outbox not drained: {left}")
        if not await outbox.run_once():
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("batch", [False, True], ids=["one-per-call", "batch"])
async def test_finished_items_leave_the_outbox_for_the_history(mongo_db: Db, batch: bool) -> None:
    endpoint = Endpoint()
    outbox = make_outbox(mongo_db, endpoint, batch=batch)
    await outbox.ensure_indexes()
    await outbox.enqueue("ok-1", "k", {})
    await outbox.enqueue("retry-1", "k", {"fail_first": 1})
    await outbox.enqueue("bad-1", "k", {"reject": True})
    await outbox.enqueue("down-1", "k", {"fail_first": 99})
    await drain(outbox)

    assert await outbox.items.count_documents({}) == 0
    history = {d["_id"]: d async for d in outbox.history.find({})}
    assert set(history) == {"ok-1", "retry-1", "bad-1", "down-1"}
    assert history["ok-1"]["status"] == "succeeded"
    assert history["ok-1"]["attempts"] == 1
    assert history["retry-1"]["status"] == "succeeded"
    assert history["retry-1"]["attempts"] == 2
    assert history["bad-1"]["status"] == "failed"
    assert history["bad-1"]["last_status_code"] == 422
    assert history["down-1"]["status"] == "failed"
    assert history["down-1"]["attempts"] == POLICY.max_attempts
    assert all(d["finished_at"] >= d["created_at"] for d in history.values())
    # The API view: current state and attempt log per item.
    doc = await outbox.get("retry-1")
    assert doc is not None
    assert doc["status"] == "succeeded"
    log = await outbox.attempts_of(["retry-1", "down-1", "nope"])
    assert [a["status"] for a in log["retry-1"]] == ["failed", "succeeded"]
    assert [a["attempt"] for a in log["down-1"]] == [1, 2, 3]
    assert log["nope"] == []
    assert await outbox.count({}) == 4
    assert await outbox.count({"status": "succeeded"}) == 2
    # An id delivered already is not enqueued again.
    assert await outbox.enqueue("ok-1", "k", {}) is False
    if batch:  # every due item of a pass went in one call
        assert len(endpoint.calls[0]) == 4


@pytest.mark.parametrize("batch", [False, True], ids=["one-per-call", "batch"])
async def test_delivery_path_reads_history_and_attempts_by_id_only(
    recorded: tuple[Db, Recorder], batch: bool
) -> None:
    db, recorder = recorded
    endpoint = Endpoint()
    outbox = make_outbox(db, endpoint, batch=batch)
    await outbox.ensure_indexes()
    # Some history first, so that a scan would have something to read.
    for i in range(20):
        await outbox.enqueue(f"old-{i}", "k", {})
    await drain(outbox)

    recorder.recording = True
    for i in range(10):
        payload = {"fail_first": 1} if i % 3 == 0 else {"reject": True} if i == 5 else {}
        assert await outbox.enqueue(f"new-{i}", "k", payload) is True
    assert await outbox.enqueue("old-3", "k", {}) is False  # a duplicate enqueue
    await drain(outbox)
    assert await outbox.run_once() == 0  # an idle pass
    assert await outbox.redeliver("new-1") is True
    await drain(outbox)
    # A stale copy left by a crash between the history insert and the outbox delete.
    stale = await outbox.history.find_one({"_id": "new-2"})
    assert stale is not None
    stale.update(status="delivering", seq=stale["seq"] - 1, next_attempt_at=utcnow())
    await outbox.items.insert_one(stale)
    await drain(outbox)
    assert await outbox.get("new-4") is not None
    recorder.recording = False

    assert recorder.commands, "nothing recorded"
    for collection in (outbox.history.name, outbox.attempts.name):
        assert recorder.on(collection), collection
        assert off_rule(recorder, collection) == [], collection
    # The poll is the one query that is not by _id, and it reads the outbox only.
    polls = [c for n, c in recorder.commands if n == "find" and not is_point(c.get("filter"))]
    assert polls
    assert {c["find"] for c in polls} == {outbox.items.name}
    assert not [
        n
        for n, c in recorder.commands
        if n in ("aggregate", "count") and c.get(n) != outbox.items.name
    ]
    # new-2 was not delivered again for the stale copy; new-1 was redelivered.
    assert endpoint.delivered().count("new-2") == 1
    assert endpoint.delivered().count("new-1") == 2


async def test_stale_copy_after_a_crash_is_removed_not_delivered(mongo_db: Db) -> None:
    endpoint = Endpoint()
    outbox = make_outbox(mongo_db, endpoint, batch=False)
    await outbox.enqueue("x", "k", {})
    await drain(outbox)
    done = await outbox.history.find_one({"_id": "x"})
    assert done is not None
    # The crash: the history insert and attempt record happened, the delete did not.
    await outbox.items.insert_one(
        {**done, "status": "delivering", "seq": done["seq"] - 1, "next_attempt_at": utcnow()}
    )
    assert (await outbox.get("x") or {})["status"] == "delivering"  # in flight until resolved
    assert await outbox.run_once() == 0
    assert await outbox.items.find_one({"_id": "x"}) is None
    assert (await outbox.get("x") or {})["status"] == "succeeded"
    assert endpoint.delivered() == ["x"]


async def test_crash_before_the_attempt_record_is_written(mongo_db: Db) -> None:
    """History insert done, attempt record still ``delivering``, outbox copy left:
    once the lease runs out the next pass deletes the copy and fills in the attempt
    record from the history; the item is not delivered again."""
    endpoint = Endpoint()
    outbox = make_outbox(mongo_db, endpoint, batch=False)
    await outbox.enqueue("c", "k", {"fail_first": 1})
    await drain(outbox)
    done = await outbox.history.find_one({"_id": "c"})
    assert done is not None
    assert (done["seq"], done["attempts"]) == (2, 2)
    past = utcnow() - timedelta(seconds=5)
    await outbox.attempts.update_one(
        {"_id": "c:1"},
        {"$set": {"status": "delivering", "lease_until": past, "status_code": None}},
    )
    await outbox.items.insert_one(
        {**done, "status": "delivering", "seq": 1, "attempts": 1, "next_attempt_at": past}
    )
    assert await outbox.run_once() == 0
    await drain(outbox)
    assert endpoint.delivered() == ["c", "c"]
    log = (await outbox.attempts_of(["c"]))["c"]
    assert [(a["status"], a["status_code"]) for a in log] == [
        ("failed", 500),
        ("succeeded", 200),
    ]
    assert (await outbox.get("c") or {})["status"] == "succeeded"


async def test_duplicate_enqueue_racing_the_move_is_never_delivered(mongo_db: Db) -> None:
    endpoint = Endpoint()
    outbox = make_outbox(mongo_db, endpoint, batch=True)
    await outbox.enqueue("e:1", "k", {})
    await drain(outbox)
    # Another replica enqueued the same id after its history read but before the
    # item moved: a fresh copy at seq 0 arrives in the outbox.
    await outbox.items.insert_one(
        {
            "_id": "e:1",
            "kind": "k",
            "payload": {},
            "status": "pending",
            "attempts": 0,
            "seq": 0,
            "max_attempts": 3,
            "next_attempt_at": utcnow(),
            "created_at": utcnow(),
            "updated_at": utcnow(),
        }
    )
    await drain(outbox)
    assert endpoint.delivered() == ["e:1"]
    assert (await outbox.get("e:1") or {})["attempts"] == 1


async def test_attempt_ended_but_item_not_moved_on_is_repaired(mongo_db: Db) -> None:
    """A crash between an attempt's record and its item's update (possible with the
    earlier version's write order): the next pass moves the item on."""
    endpoint = Endpoint()
    outbox = make_outbox(mongo_db, endpoint, batch=False)
    await outbox.enqueue("r", "k", {})
    past = utcnow() - timedelta(seconds=5)
    await outbox.attempts.insert_one(
        {
            "_id": "r:0",
            "item_id": "r",
            "attempt": 1,
            "status": "failed",
            "status_code": 503,
            "error": "HTTP 503",
            "started_at": past,
            "ended_at": past,
        }
    )
    assert await outbox.run_once() == 0  # moves it on to seq 1
    doc = await outbox.get("r")
    assert doc is not None
    assert (doc["seq"], doc["attempts"], doc["last_status_code"]) == (1, 1, 503)
    await drain(outbox)
    assert (await outbox.get("r") or {})["status"] == "succeeded"
    assert endpoint.delivered() == ["r"]


async def test_redeliver_claims_once_and_keeps_the_history_until_done(mongo_db: Db) -> None:
    endpoint = Endpoint()
    outbox = make_outbox(mongo_db, endpoint, batch=False)
    await outbox.enqueue("d", "k", {})
    assert await outbox.redeliver("d") is False  # still to deliver
    await drain(outbox)
    assert await outbox.redeliver("missing") is False
    results = await asyncio.gather(*(outbox.redeliver("d") for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    doc = await outbox.get("d")
    assert doc is not None
    assert (doc["status"], doc["redeliveries"], doc["max_attempts"]) == ("pending", 1, 4)
    assert await outbox.count({}) == 1
    assert await outbox.count({"status": "succeeded"}) == 0  # its in-flight copy counts
    await drain(outbox)
    assert await outbox.items.count_documents({}) == 0
    doc = await outbox.get("d")
    assert doc is not None
    assert (doc["status"], doc["attempts"], doc["redeliveries"]) == ("succeeded", 2, 1)
    assert endpoint.delivered() == ["d", "d"]
    log = (await outbox.attempts_of(["d"]))["d"]
    assert [a["attempt"] for a in log] == [1, 2]


async def test_items_left_by_the_earlier_version_move_to_the_history(mongo_db: Db) -> None:
    endpoint = Endpoint()
    outbox = make_outbox(mongo_db, endpoint, batch=False)
    now = utcnow()
    legacy = [
        {
            "_id": f"legacy-{i}",
            "kind": "k",
            "payload": {},
            "status": "succeeded" if i % 2 else "failed",
            "attempts": 1,
            "seq": 1,
            "max_attempts": 3,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(7)
    ]
    await outbox.items.insert_many(legacy[:5])
    assert await outbox.archive_finished() == 5
    await outbox.items.insert_many(legacy[5:])  # written by an old replica meanwhile
    await outbox.enqueue("new", "k", {})
    await drain(outbox)
    assert await outbox.items.count_documents({}) == 0
    assert await outbox.history.count_documents({}) == 8
    assert endpoint.delivered() == ["new"]


async def test_listing_spans_outbox_and_history_newest_first(mongo_db: Db) -> None:
    endpoint = Endpoint()
    outbox = make_outbox(mongo_db, endpoint, batch=True)
    await outbox.ensure_indexes()
    for i in range(12):
        await outbox.enqueue(f"i{i:02d}", "k", {"fail_first": 99 if i % 4 == 0 else 0})
        await asyncio.sleep(0.002)  # distinct created_at
    assert await outbox.run_once() == 12  # 9 finished, 3 retrying (still in the outbox)
    assert await outbox.items.count_documents({}) == 3
    assert await outbox.redeliver("i05") is True  # in both collections now

    newest_first = [f"i{i:02d}" for i in reversed(range(12))]
    docs, total = await outbox.find_items({}, limit=100, offset=0)
    assert [d["_id"] for d in docs] == newest_first
    assert total == 12
    assert next(d for d in docs if d["_id"] == "i05")["status"] == "pending"
    for limit in (1, 2, 5):
        pages = []
        for offset in range(0, 14, limit):
            page, total = await outbox.find_items({}, limit=limit, offset=offset)
            assert total == 12
            pages.extend(d["_id"] for d in page)
        assert pages == newest_first, limit
    done, total = await outbox.find_items({"status": "succeeded"}, limit=100, offset=0)
    assert total == len(done) == 8  # i05 is pending again
    assert "i05" not in [d["_id"] for d in done]
    waiting, total = await outbox.find_items({"status": "pending"}, limit=2, offset=1)
    assert total == 4
    assert [d["_id"] for d in waiting] == ["i05", "i04"]


async def test_a_pass_over_many_due_items_does_not_lock_up_the_store(mongo_db: Db) -> None:
    """150 due items in one pass (the audit outbox takes up to 200). Their claim and
    end were once sent as one multi-statement ``update``, and FerretDB v1 keeps a
    SQLite connection per statement until the command ends: at 100 statements its
    pool was exhausted and every later command hung. One update per item now."""
    delivered: list[int] = []

    async def accept(batch: Sequence[tuple[OutboxItem, int]]) -> list[AttemptResult]:
        delivered.append(len(batch))
        return [AttemptResult(ok=True, status_code=200)] * len(batch)

    policy = RetryPolicy(
        max_attempts=3,
        base_delay=0.01,
        max_delay=0.02,
        attempt_timeout=1,
        lease_seconds=2,
        poll_interval=0.05,
        batch_size=150,
    )
    outbox = Outbox(mongo_db, "many", policy=policy, deliver_batch=accept)
    await asyncio.gather(*(outbox.enqueue(f"m{i}", "k", {}, new_id=True) for i in range(150)))
    await asyncio.wait_for(drain(outbox), 30)
    assert delivered == [150]
    # The store still answers.
    assert await asyncio.wait_for(mongo_db["many_history"].count_documents({}), 10) == 150


async def test_a_batch_that_raises_is_retried_as_a_whole(mongo_db: Db) -> None:
    calls: list[int] = []

    async def flaky(batch: Sequence[tuple[OutboxItem, int]]) -> list[AttemptResult]:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("receiver bug")
        return [AttemptResult(ok=True, status_code=200)] * len(batch)

    outbox = Outbox(mongo_db, "flaky", policy=POLICY, deliver_batch=flaky)
    for i in range(5):
        await outbox.enqueue(f"f{i}", "k", {})
    await drain(outbox)
    # The raising call was one failed attempt for each of its 5 items. Their retries
    # are due at jittered times, so a pass may find only some of them due: all 5 are
    # delivered again, in one call or several.
    assert calls[0] == 5
    assert sum(calls[1:]) == 5
    docs, total = await outbox.find_items({}, limit=10, offset=0)
    assert total == 5
    assert {(d["status"], d["attempts"]) for d in docs} == {("succeeded", 2)}


def test_outbox_needs_exactly_one_delivery_function() -> None:
    async def one(item: OutboxItem, attempt: int) -> AttemptResult:
        raise AssertionError

    async def many(batch: Sequence[tuple[OutboxItem, int]]) -> list[AttemptResult]:
        raise AssertionError

    db: Any = {}
    with pytest.raises(ValueError, match="exactly one"):
        Outbox(db, "x")
    with pytest.raises(ValueError, match="exactly one"):
        Outbox(db, "x", one, deliver_batch=many)
