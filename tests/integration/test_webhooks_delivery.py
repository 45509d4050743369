"""Webhook deliveries end to end on the real stack: orchestrator events published
through the real ``EventPublisher`` → ``event_inbox`` → outbox (MongoDB) → signed
POSTs to a real local HTTP receiver that verifies them with the shared helper;
retries, attempts recorded, redirects not followed, exactly once across replicas,
redelivery, lease takeover; the scan never reads ``events``."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from orchestrator.events.publisher import EventPublisher
from orchestrator.events.repository import EventRepository
from orchestrator.webhooks.config import WebhookSettings
from orchestrator.webhooks.model import SOURCE_EVENT_TYPES
from orchestrator.webhooks.service import WebhookService
from provisioning_common.events import EventBus
from provisioning_common.mongo import open_client
from provisioning_common.outbox import AttemptResult, Outbox, OutboxItem, RetryPolicy
from provisioning_common.storage_rules import ORCHESTRATOR_BOUNDED
from provisioning_common.timeutil import utcnow
from provisioning_common.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    WebhookVerificationError,
    verify_payload_signature,
    verify_request,
)
from tests.support.command_guard import CommandGuard

Db = AsyncDatabase[dict[str, Any]]
SECRET = "receiver-secret-1"


@dataclass
class Receiver:
    """A real HTTP server; ``fail_first`` answers 500 that many times per delivery."""

    secret: str = SECRET
    fail_first: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    redirect_hits: int = 0
    server: TestServer | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        app.router.add_post("/moved", self.moved)
        app.router.add_post("/elsewhere", self.elsewhere)
        return app

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify_request(self.secret, body, request.headers)
            verify_payload_signature(self.secret, body, request.headers["X-Provisioning-Timestamp"])
        except WebhookVerificationError as exc:
            self.received.append({"verified": False, "error": str(exc)})
            return web.Response(status=401)
        delivery = request.headers[DELIVERY_HEADER]
        seen = self.failures.get(delivery, 0)
        if seen < self.fail_first:
            self.failures[delivery] = seen + 1
            return web.Response(status=500)
        self.received.append(
            {
                "verified": True,
                "delivery": delivery,
                "event": request.headers[EVENT_HEADER],
                "payload": json.loads(body),
            }
        )
        return web.Response(status=204)

    async def moved(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    async def elsewhere(self, request: web.Request) -> web.Response:
        self.redirect_hits += 1
        return web.Response(status=200)

    def url(self, path: str = "/hook") -> str:
        assert self.server is not None
        return str(self.server.make_url(path))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    rec.server = TestServer(rec.app())
    await rec.server.start_server()
    try:
        yield rec
    finally:
        await rec.server.close()


def settings_for(*endpoints: dict[str, Any], max_attempts: int = 5) -> WebhookSettings:
    return WebhookSettings.from_toml(
        {
            "webhooks": {
                "enabled": True,
                "endpoints": list(endpoints),
                "max_attempts": max_attempts,
                "timeout_seconds": 2,
                "backoff_base_seconds": 0.05,
                "backoff_max_seconds": 0.2,
                "poll_seconds": 0.05,
            }
        }
    )


def make_service(db: Db, settings: WebhookSettings) -> WebhookService:
    async def lookup(task_id: str) -> dict[str, Any]:
        return {"name": f"task-{task_id}", "output": "Task completed successfully"}

    return WebhookService(settings, db, EventRepository(db), task_lookup=lookup)


@pytest.fixture
def publisher(mongo_db: Db, redis_client: Redis) -> EventPublisher:
    """The real publisher, routing the webhook source event types to the inbox (as
    the container does, with the types rather than one service's endpoints)."""
    return routed_publisher(mongo_db, redis_client)


def routed_publisher(db: Db, redis: Redis) -> EventPublisher:
    publisher = EventPublisher(EventRepository(db), EventBus(redis))
    publisher.route_to_inbox(lambda event_type, data: event_type in SOURCE_EVENT_TYPES)
    return publisher


async def store_event(publisher: EventPublisher, event_type: str, data: dict[str, Any]) -> str:
    event = await publisher.publish(event_type, data, dict(data))
    return event.id


async def inbox_ids(db: Db) -> list[str]:
    return [str(d["_id"]) async for d in db["event_inbox"].find({})]


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def wait_status(service: WebhookService, item_id: str, status: str) -> dict[str, Any]:
    for _ in range(200):
        doc = await service.outbox.get(item_id)
        if doc is not None and doc["status"] == status:
            return doc
        await asyncio.sleep(0.05)
    raise AssertionError(f"{item_id} never reached {status}")


async def test_signed_delivery_verified_by_receiver(
    mongo_db: Db, receiver: Receiver, publisher: EventPublisher
) -> None:
    settings = settings_for(
        {"url": receiver.url(), "events": ["task.completed", "task.failed"], "secret": SECRET}
    )
    service = make_service(mongo_db, settings)
    await service.start()
    try:
        done = await store_event(
            publisher, "TaskStatusChanged", {"task_id": "t1", "status": "completed"}
        )
        await store_event(publisher, "TaskStatusChanged", {"task_id": "t1", "status": "running"})
        await store_event(
            publisher, "BatchStatusChanged", {"batch_id": "b1", "status": "completed"}
        )
        await wait_for(lambda: len(receiver.received) >= 1)
        await asyncio.sleep(0.3)  # nothing else may arrive (not subscribed / not final)
    finally:
        await service.stop()
    assert len(receiver.received) == 1
    got = receiver.received[0]
    assert got["verified"] is True
    assert got["event"] == "task.completed"
    assert got["delivery"] == f"{done}:{settings.endpoints[0].id}"
    payload = got["payload"]
    assert payload["event"] == "task.completed"
    assert payload["data"]["task_id"] == "t1"
    assert payload["data"]["status"] == "completed"
    assert payload["data"]["output"] == "Task completed successfully"
    assert payload["signature"].startswith("sha256=")


async def test_fails_twice_then_succeeds_three_attempts(
    mongo_db: Db, receiver: Receiver, publisher: EventPublisher
) -> None:
    receiver.fail_first = 2
    settings = settings_for({"url": receiver.url(), "events": ["task.failed"], "secret": SECRET})
    service = make_service(mongo_db, settings)
    await service.start()
    try:
        event_id = await store_event(
            publisher, "TaskStatusChanged", {"task_id": "t2", "status": "FAILED"}
        )
        item_id = f"{event_id}:{settings.endpoints[0].id}"
        doc = await wait_status(service, item_id, "succeeded")
    finally:
        await service.stop()
    assert doc["attempts"] == 3
    attempts = (await service.outbox.attempts_of([item_id]))[item_id]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["status"] for a in attempts] == ["failed", "failed", "succeeded"]
    assert [a["status_code"] for a in attempts] == [500, 500, 204]
    assert all(a["ended_at"] >= a["started_at"] for a in attempts)
    assert len(receiver.received) == 1


async def test_wrong_secret_fails_verification_and_gives_up(
    mongo_db: Db, receiver: Receiver, publisher: EventPublisher
) -> None:
    receiver.secret = "the-receivers-other-secret"
    settings = settings_for(
        {"url": receiver.url(), "events": ["task.completed"], "secret": SECRET}, max_attempts=2
    )
    service = make_service(mongo_db, settings)
    await service.start()
    try:
        event_id = await store_event(
            publisher, "TaskStatusChanged", {"task_id": "t3", "status": "completed"}
        )
        item_id = f"{event_id}:{settings.endpoints[0].id}"
        doc = await wait_status(service, item_id, "failed")
    finally:
        await service.stop()
    assert doc["attempts"] == 2
    assert doc["last_status_code"] == 401
    assert receiver.received
    assert all(r["verified"] is False for r in receiver.received)


async def test_redirect_not_followed(
    mongo_db: Db, receiver: Receiver, publisher: EventPublisher
) -> None:
    settings = settings_for(
        {"url": receiver.url("/moved"), "events": ["rollback.completed"], "secret": SECRET},
        max_attempts=1,
    )
    service = make_service(mongo_db, settings)
    await service.start()
    try:
        event_id = await store_event(publisher, "RollbackCompleted", {"rollback_id": "r1"})
        item_id = f"{event_id}:{settings.endpoints[0].id}"
        doc = await wait_status(service, item_id, "failed")
    finally:
        await service.stop()
    assert doc["last_status_code"] == 302
    assert doc["last_error"] == "redirect not followed"
    assert receiver.redirect_hits == 0


async def test_exactly_once_with_two_replicas(
    mongo_db: Db, receiver: Receiver, publisher: EventPublisher
) -> None:
    settings = settings_for(
        {"url": receiver.url(), "events": ["batch.completed"], "secret": SECRET}
    )
    replicas = [make_service(mongo_db, settings), make_service(mongo_db, settings)]

    async def batch_done(i: int) -> str:
        return await store_event(
            publisher, "BatchStatusChanged", {"batch_id": f"b{i}", "status": "completed"}
        )

    # Some events wait in the inbox before the replicas start: both drain them at once.
    ids = [await batch_done(i) for i in range(5)]
    await asyncio.gather(*(replica.start() for replica in replicas))
    try:
        ids += [await batch_done(i) for i in range(5, 10)]
        await wait_for(lambda: len(receiver.received) >= len(ids))
        await asyncio.sleep(0.4)  # duplicates would show up now
        # Both replicas handling the same inbox entry again creates nothing new.
        again: dict[str, Any] = {"id": ids[0], "event_type": "BatchStatusChanged"}
        again["data"] = {"batch_id": "b0", "status": "completed"}
        created = await asyncio.gather(*(r.handle_event(again) for r in replicas))
        assert created == [0, 0]
        for replica in replicas:
            assert await replica.scan_once() == 0  # the inbox is drained
    finally:
        for replica in replicas:
            await replica.stop()
    deliveries = [r["delivery"] for r in receiver.received]
    assert len(deliveries) == len(ids)
    assert sorted(d.split(":")[0] for d in deliveries) == sorted(ids)
    assert await replicas[0].outbox.count({}) == len(ids)
    assert await inbox_ids(mongo_db) == []


async def test_redeliver_sends_again(
    mongo_db: Db, receiver: Receiver, publisher: EventPublisher
) -> None:
    settings = settings_for({"url": receiver.url(), "events": ["batch.failed"], "secret": SECRET})
    service = make_service(mongo_db, settings)
    await service.start()
    try:
        event_id = await store_event(publisher, "BatchFailed", {"batch_id": "b9"})
        item_id = f"{event_id}:{settings.endpoints[0].id}"
        await wait_status(service, item_id, "succeeded")
        assert await service.outbox.redeliver(item_id) is True
        await wait_for(lambda: len(receiver.received) >= 2)
        doc = await wait_status(service, item_id, "succeeded")
        assert await service.outbox.redeliver("no-such-delivery") is False
    finally:
        await service.stop()
    assert doc["attempts"] == 2
    assert doc["redeliveries"] == 1
    assert [r["delivery"] for r in receiver.received] == [item_id, item_id]


async def test_events_before_start_are_picked_up(
    mongo_db: Db, receiver: Receiver, publisher: EventPublisher
) -> None:
    """An event published while no replica ran is still delivered: the inbox keeps
    it until a replica has handled it."""
    settings = settings_for({"url": receiver.url(), "events": ["task.completed"], "secret": SECRET})
    early = await store_event(
        publisher, "TaskStatusChanged", {"task_id": "early", "status": "completed"}
    )
    assert await inbox_ids(mongo_db) == [early]
    service = make_service(mongo_db, settings)
    await service.start()
    try:
        await wait_for(lambda: len(receiver.received) == 1)
    finally:
        await service.stop()
    assert receiver.received[0]["payload"]["data"]["task_id"] == "early"
    assert await inbox_ids(mongo_db) == []


async def test_an_entry_that_fails_stays_and_the_others_are_handled(
    mongo_db: Db, publisher: EventPublisher
) -> None:
    settings = settings_for(
        {"url": "http://127.0.0.1:9/hook", "events": ["batch.failed"], "secret": SECRET}
    )
    service = make_service(mongo_db, settings)  # not started: scans by hand
    ids = [await store_event(publisher, "BatchFailed", {"batch_id": f"b{i}"}) for i in range(3)]
    real = service.handle_event
    broken = {ids[1]}

    async def flaky(event: Any) -> int:
        if event["id"] in broken:
            raise ConnectionError("storage went away")
        return await real(event)

    service.handle_event = flaky  # type: ignore[method-assign]
    assert await service.scan_once() == 2
    assert await inbox_ids(mongo_db) == [ids[1]]
    broken.clear()
    assert await service.scan_once() == 1
    assert await inbox_ids(mongo_db) == []
    assert await service.outbox.count({}) == 3


async def test_scan_reads_the_inbox_never_events(
    stack: Any, redis_client: Redis, receiver: Receiver
) -> None:
    """The scan keeps the storage rule (docs/storage.md): it reads the bounded
    ``event_inbox``, and ``events`` (history) is only inserted into."""
    guard = CommandGuard()
    name = f"test_{uuid.uuid4().hex[:12]}"
    guard.watch(name, ORCHESTRATOR_BOUNDED)
    client = open_client(stack.mongodb_url, event_listeners=[guard])
    db = client[name]
    try:
        settings = settings_for(
            {"url": receiver.url(), "events": ["task.completed"], "secret": SECRET}
        )
        service = make_service(db, settings)
        publisher = EventPublisher(EventRepository(db), EventBus(redis_client))
        publisher.route_to_inbox(service.wants)  # as the container does
        await service.start()
        try:
            guard.start()
            for i in range(3):
                await store_event(
                    publisher, "TaskStatusChanged", {"task_id": f"t{i}", "status": "completed"}
                )
            await store_event(publisher, "TaskStatusChanged", {"task_id": "t", "status": "running"})
            await wait_for(lambda: len(receiver.received) >= 3)
            await asyncio.sleep(0.3)  # a few more scans of the (empty) inbox
            guard.stop()
        finally:
            await service.stop()
        assert await inbox_ids(db) == []
    finally:
        await client.drop_database(name)
        await client.close()
    on_events = {r.command_name for r in guard.records if r.collection == "events"}
    assert on_events == {"insert"}, guard.collections()
    inbox = guard.collections()["event_inbox"]
    assert inbox["insert"] == 3  # only the events that become deliveries
    assert inbox["find"] >= 2, inbox
    assert inbox["delete"] == 3, inbox
    assert not guard.violations(), guard.report()
    assert len(receiver.received) == 3


def test_inbox_is_routed_only_with_endpoints() -> None:
    from orchestrator.webhooks import inbox_route

    def route_for(toml: dict[str, Any]) -> Any:
        return inbox_route(WebhookSettings.from_toml(toml))

    endpoint = {"url": "http://127.0.0.1:9/hook", "events": ["task.failed"], "secret": SECRET}
    assert route_for({}) is None
    assert route_for({"webhooks": {"enabled": False, "endpoints": [endpoint]}}) is None
    assert route_for({"webhooks": {"enabled": True}}) is None
    route = route_for({"webhooks": {"enabled": True, "endpoints": [endpoint]}})
    assert route.select("TaskStatusChanged", {"status": "failed"}) is True
    assert route.select("TaskStatusChanged", {"status": "completed"}) is False
    assert route.select("TaskProgress", {"status": "failed"}) is False


async def test_inbox_gets_only_wanted_events_and_nothing_unrouted(
    mongo_db: Db, redis_client: Redis
) -> None:
    settings = settings_for(
        {"url": "http://127.0.0.1:9/hook", "events": ["task.failed"], "secret": SECRET}
    )
    service = make_service(mongo_db, settings)
    publisher = EventPublisher(EventRepository(mongo_db), EventBus(redis_client))
    unrouted = await publisher.publish("TaskStatusChanged", {"task_id": "a", "status": "failed"})
    publisher.route_to_inbox(service.wants)
    events = await publisher.publish_many(
        [
            ("TaskStatusChanged", {"task_id": "a", "status": "running"}, None),
            ("TaskStatusChanged", {"task_id": "a", "status": "failed"}, None),
            ("TaskStatusChanged", {"task_id": "b", "status": "completed"}, None),
            ("BatchStatusChanged", {"batch_id": "c", "status": "failed"}, None),
            ("TaskProgress", {"task_id": "a", "progress": 50}, None),
        ]
    )
    failed = await publisher.publish("TaskStatusChanged", {"task_id": "d", "status": "FAILED"})
    assert await inbox_ids(mongo_db) == [events[1].id, failed.id]
    stored = await mongo_db["event_inbox"].find_one({"_id": failed.id})
    assert stored == await mongo_db["events"].find_one({"_id": failed.id})  # same document
    assert await mongo_db["events"].count_documents({}) == 7
    assert unrouted.id not in await inbox_ids(mongo_db)


async def test_outbox_takes_over_an_abandoned_attempt(mongo_db: Db) -> None:
    delivered: list[int] = []

    async def deliver(item: OutboxItem, attempt: int) -> AttemptResult:
        delivered.append(attempt)
        return AttemptResult(ok=True, status_code=200)

    outbox = Outbox(mongo_db, "takeover", deliver, RetryPolicy(attempt_timeout=1, lease_seconds=2))
    await outbox.ensure_indexes()
    assert await outbox.enqueue("item-1", "test", {"x": 1}) is True
    assert await outbox.enqueue("item-1", "test", {"x": 1}) is False  # idempotent
    # A replica claimed attempt 0 and died: its lease has run out.
    past = utcnow() - timedelta(seconds=5)
    await outbox.attempts.insert_one(
        {
            "_id": "item-1:0",
            "item_id": "item-1",
            "attempt": 1,
            "worker_id": "dead",
            "status": "delivering",
            "started_at": past,
            "lease_until": past,
        }
    )
    assert await outbox.run_once() == 0  # takes over, records the abandoned attempt
    assert await outbox.run_once() == 1  # then delivers
    doc = await outbox.get("item-1")
    assert doc is not None
    assert doc["status"] == "succeeded"
    assert doc["attempts"] == 2
    assert delivered == [2]
    attempts = (await outbox.attempts_of(["item-1"]))["item-1"]
    assert [a["status"] for a in attempts] == ["abandoned", "succeeded"]


def test_bad_webhook_config_is_rejected() -> None:
    from provisioning_common.config import ConfigError

    bad: list[dict[str, Any]] = [
        {"webhooks": {"enabled": "yes"}},
        {
            "webhooks": {
                "enabled": True,
                "endpoints": [{"url": "ftp://x", "events": ["task.failed"], "secret": "12345678"}],
            }
        },
        {
            "webhooks": {
                "enabled": True,
                "endpoints": [{"url": "http://x", "events": ["nope"], "secret": "12345678"}],
            }
        },
        {
            "webhooks": {
                "enabled": True,
                "endpoints": [{"url": "http://x", "events": ["task.failed"], "secret": "short"}],
            }
        },
        {"webhooks": {"enabled": True, "max_attempts": 0}},
    ]
    for toml in bad:
        with pytest.raises(ConfigError):
            WebhookSettings.from_toml(toml)
    assert WebhookSettings.from_toml({}).enabled is False


def test_display_url_drops_credentials_and_query() -> None:
    from orchestrator.webhooks.config import display_url

    assert display_url("https://user:pw@hooks.example:8443/in/x?token=abc#f") == (
        "https://hooks.example:8443/in/x"
    )
