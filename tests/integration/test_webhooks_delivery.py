"""Webhook deliveries end to end on the real stack: stored orchestrator events →
outbox (MongoDB) → signed POSTs to a real local HTTP receiver that verifies them
with the shared helper; retries, attempts recorded, redirects not followed,
exactly once across replicas, redelivery, lease takeover."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pymongo.asynchronous.database import AsyncDatabase

from orchestrator.events.publisher import new_event_id
from orchestrator.events.repository import EventRepository
from orchestrator.webhooks.config import WebhookSettings
from orchestrator.webhooks.repository import CursorRepository
from orchestrator.webhooks.service import WebhookService
from provisioning_common.envelope import format_timestamp
from provisioning_common.outbox import AttemptResult, Outbox, OutboxItem, RetryPolicy
from provisioning_common.timeutil import utcnow
from provisioning_common.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    WebhookVerificationError,
    verify_payload_signature,
    verify_request,
)

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

    return WebhookService(
        settings, db, EventRepository(db), CursorRepository(db), task_lookup=lookup
    )


async def store_event(db: Db, event_type: str, data: dict[str, Any]) -> str:
    event_id = new_event_id()
    await EventRepository(db).insert(
        {
            "id": event_id,
            "event_type": event_type,
            "timestamp": format_timestamp(utcnow()),
            "data": data,
            "metadata": dict(data),
        }
    )
    return event_id


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


async def test_signed_delivery_verified_by_receiver(mongo_db: Db, receiver: Receiver) -> None:
    settings = settings_for(
        {"url": receiver.url(), "events": ["task.completed", "task.failed"], "secret": SECRET}
    )
    service = make_service(mongo_db, settings)
    await service.start()
    try:
        done = await store_event(
            mongo_db, "TaskStatusChanged", {"task_id": "t1", "status": "completed"}
        )
        await store_event(mongo_db, "TaskStatusChanged", {"task_id": "t1", "status": "running"})
        await store_event(mongo_db, "BatchStatusChanged", {"batch_id": "b1", "status": "completed"})
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


async def test_fails_twice_then_succeeds_three_attempts(mongo_db: Db, receiver: Receiver) -> None:
    receiver.fail_first = 2
    settings = settings_for({"url": receiver.url(), "events": ["task.failed"], "secret": SECRET})
    service = make_service(mongo_db, settings)
    await service.start()
    try:
        event_id = await store_event(
            mongo_db, "TaskStatusChanged", {"task_id": "t2", "status": "FAILED"}
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
    mongo_db: Db, receiver: Receiver
) -> None:
    receiver.secret = "the-receivers-other-secret"
    settings = settings_for(
        {"url": receiver.url(), "events": ["task.completed"], "secret": SECRET}, max_attempts=2
    )
    service = make_service(mongo_db, settings)
    await service.start()
    try:
        event_id = await store_event(
            mongo_db, "TaskStatusChanged", {"task_id": "t3", "status": "completed"}
        )
        item_id = f"{event_id}:{settings.endpoints[0].id}"
        doc = await wait_status(service, item_id, "failed")
    finally:
        await service.stop()
    assert doc["attempts"] == 2
    assert doc["last_status_code"] == 401
    assert receiver.received
    assert all(r["verified"] is False for r in receiver.received)


async def test_redirect_not_followed(mongo_db: Db, receiver: Receiver) -> None:
    settings = settings_for(
        {"url": receiver.url("/moved"), "events": ["rollback.completed"], "secret": SECRET},
        max_attempts=1,
    )
    service = make_service(mongo_db, settings)
    await service.start()
    try:
        event_id = await store_event(mongo_db, "RollbackCompleted", {"rollback_id": "r1"})
        item_id = f"{event_id}:{settings.endpoints[0].id}"
        doc = await wait_status(service, item_id, "failed")
    finally:
        await service.stop()
    assert doc["last_status_code"] == 302
    assert doc["last_error"] == "redirect not followed"
    assert receiver.redirect_hits == 0


async def test_exactly_once_with_two_replicas(mongo_db: Db, receiver: Receiver) -> None:
    settings = settings_for(
        {"url": receiver.url(), "events": ["batch.completed"], "secret": SECRET}
    )
    replicas = [make_service(mongo_db, settings), make_service(mongo_db, settings)]
    for replica in replicas:
        await replica.start()
    try:
        ids = [
            await store_event(
                mongo_db, "BatchStatusChanged", {"batch_id": f"b{i}", "status": "completed"}
            )
            for i in range(10)
        ]
        await wait_for(lambda: len(receiver.received) >= len(ids))
        await asyncio.sleep(0.4)  # duplicates would show up now
        # Both replicas scanned the same events; each was enqueued and delivered once.
        for replica in replicas:
            await replica.scan_once()
    finally:
        for replica in replicas:
            await replica.stop()
    deliveries = [r["delivery"] for r in receiver.received]
    assert len(deliveries) == len(ids)
    assert sorted(d.split(":")[0] for d in deliveries) == sorted(ids)
    assert await replicas[0].outbox.count({}) == len(ids)


async def test_redeliver_sends_again(mongo_db: Db, receiver: Receiver) -> None:
    settings = settings_for({"url": receiver.url(), "events": ["batch.failed"], "secret": SECRET})
    service = make_service(mongo_db, settings)
    await service.start()
    try:
        event_id = await store_event(mongo_db, "BatchFailed", {"batch_id": "b9"})
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


async def test_events_before_start_are_picked_up(mongo_db: Db, receiver: Receiver) -> None:
    """An event stored while no replica ran (within the look-back) is still delivered."""
    settings = settings_for({"url": receiver.url(), "events": ["task.completed"], "secret": SECRET})
    await store_event(mongo_db, "TaskStatusChanged", {"task_id": "early", "status": "completed"})
    service = make_service(mongo_db, settings)
    await service.start()
    try:
        await wait_for(lambda: len(receiver.received) == 1)
    finally:
        await service.stop()
    assert receiver.received[0]["payload"]["data"]["task_id"] == "early"


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
