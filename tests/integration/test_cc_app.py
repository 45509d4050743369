"""The control center in-process against real Redis and the MongoDB-compatible server:
key storage and rotation, revocation and policy events, audit search, seeding races,
session lifetime and the Redis-down answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from control_center.app import create_app
from control_center.container import Container
from control_center.deps import CONTAINER
from control_center.keys.repository import KeyRepository
from control_center.keys.service import KeyRing
from control_center.settings import Settings
from provisioning_common.events import POLICIES_CHANNEL, REVOCATIONS_CHANNEL
from provisioning_common.mongo import open_client
from provisioning_common.tokens import decode_token
from tests.support.control_center import ADMIN_PASSWORD, TEST_ENV

Factory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client(stack: Any) -> AsyncIterator[Factory]:
    clients: list[TestClient[Any, Any]] = []
    databases: list[str] = []

    async def factory(**env: str) -> TestClient[Any, Any]:
        name = f"cc_it_{uuid.uuid4().hex[:10]}"
        databases.append(name)
        settings = Settings.from_env({**stack.env(), **TEST_ENV, "MONGODB_DATABASE": name, **env})
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        clients.append(client)
        return client

    try:
        yield factory
    finally:
        for client in clients:
            await client.close()
        mongo = open_client(stack.mongodb_url)
        for name in databases:
            await mongo.drop_database(name)
        await mongo.close()


def ctx_of(client: TestClient[Any, Any]) -> Container:
    return client.server.app[CONTAINER]


async def login(
    client: TestClient[Any, Any], username: str = "admin", password: str = ADMIN_PASSWORD
) -> dict[str, Any]:
    resp = await client.post("/auth/login", json={"username": username, "password": password})
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = (await resp.json())["data"]
    return data


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_key_generation_is_race_free_and_rotation_keeps_old_tokens(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    repo = KeyRepository(mongo_db)
    rings = [KeyRing() for _ in range(4)]
    await asyncio.gather(*(r.load_from_store(repo) for r in rings))
    kids = {r.active.kid for r in rings if r.active}
    assert len(kids) == 1
    old_kid = kids.pop()
    now = int(time.time())
    claims = {
        "sub": "u",
        "username": "u",
        "roles": [],
        "jti": "j",
        "iat": now,
        "exp": now + 60,
        "iss": "i",
        "aud": "a",
        "typ": "access",
    }
    old_token = rings[0].sign(claims)
    new_kid = await rings[1].rotate(repo)
    assert new_kid != old_kid
    await rings[2].reload(repo)
    assert rings[2].active is not None
    assert rings[2].active.kid == new_kid
    assert [k["kid"] for k in rings[2].jwks()["keys"]] == [new_kid, old_kid]
    # a token signed before the rotation still verifies on every replica
    decoded = decode_token(
        old_token, rings[2].verification_keys, issuer="i", audience="a", expected_typ="access"
    )
    assert decoded.sub == "u"
    assert await rings[3].reload_if_stale(repo, min_interval=0)
    assert rings[3].active is not None
    assert rings[3].active.kid == new_kid


async def test_keys_survive_restart(make_client: Factory) -> None:
    first = await make_client(MONGODB_DATABASE="cc_it_restart_" + uuid.uuid4().hex[:6])
    db_name = ctx_of(first).settings.common.database
    jwks1 = await (await first.get("/.well-known/jwks.json")).json()
    token = (await login(first))["token"]
    second = await make_client(MONGODB_DATABASE=db_name)
    jwks2 = await (await second.get("/.well-known/jwks.json")).json()
    assert jwks1 == jwks2
    resp = await second.get("/auth/me", headers=bearer(token))
    assert resp.status == 200
    await ctx_of(second).repos.keys.collection.database.client.drop_database(db_name)


async def _collect(
    redis: Redis, channel: str, ready: asyncio.Event, out: list[dict[str, Any]]
) -> None:
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    ready.set()
    try:
        while True:
            msg = await pubsub.get_message(timeout=0.2)
            if msg and msg.get("type") == "message":
                out.append(json.loads(msg["data"]))
    finally:
        await pubsub.unsubscribe()
        await pubsub.aclose()


async def _listening(redis: Redis, channel: str) -> tuple[asyncio.Task[None], list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    ready = asyncio.Event()
    task = asyncio.create_task(_collect(redis, channel, ready, out))
    await ready.wait()
    return task, out


async def _stop(task: asyncio.Task[None]) -> None:
    await asyncio.sleep(0.3)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_revocations_are_persisted_cached_and_published(
    make_client: Factory, redis_client: Redis
) -> None:
    client = await make_client()
    ctx = ctx_of(client)
    task, events = await _listening(redis_client, REVOCATIONS_CHANNEL)
    try:
        session = await login(client)
        claims = decode_token(
            session["token"],
            ctx.keyring.verification_keys,
            issuer=ctx.settings.auth.issuer,
            audience=ctx.settings.auth.audience,
            expected_typ="access",
        )
        assert (await client.post("/auth/logout", headers=bearer(session["token"]))).status == 200
        ttl = await redis_client.ttl(f"revoked:jti:{claims.jti}")
        assert 0 < ttl <= claims.exp - int(time.time()) + 1
        assert await ctx.repos.tokens.is_revoked(claims.jti)
        # a user-wide revocation when an admin disables a user
        admin = (await login(client))["token"]
        resp = await client.post(
            "/users",
            headers=bearer(admin),
            json={
                "username": "rev-user",
                "email": "r@example.com",
                "password": "Rev-User-Pass1",
                "roles": ["viewer"],
            },
        )
        user_id = (await resp.json())["data"]["id"]
        await client.put(f"/users/{user_id}", headers=bearer(admin), json={"enabled": False})
    finally:
        await _stop(task)
    assert {"jti": claims.jti, "exp": claims.exp} in events
    user_events = [e for e in events if e.get("sub") == user_id]
    assert user_events
    assert user_events[0]["revoked_before"] >= int(time.time()) - 5


async def test_redis_loss_does_not_resurrect_revoked_tokens(
    make_client: Factory, redis_client: Redis
) -> None:
    client = await make_client()
    ctx = ctx_of(client)
    session = await login(client)
    claims = decode_token(
        session["token"],
        ctx.keyring.verification_keys,
        issuer=ctx.settings.auth.issuer,
        audience=ctx.settings.auth.audience,
        expected_typ="access",
    )
    await client.post("/auth/logout", headers=bearer(session["token"]))
    await redis_client.delete(f"revoked:jti:{claims.jti}")
    assert (await client.get("/auth/me", headers=bearer(session["token"]))).status == 401


async def test_policy_changes_are_published_and_conditions_compiled(
    make_client: Factory, redis_client: Redis
) -> None:
    client = await make_client()
    admin = (await login(client))["token"]
    task, events = await _listening(redis_client, POLICIES_CHANNEL)
    try:
        bad = await client.post(
            "/policies",
            headers=bearer(admin),
            json={
                "name": "broken",
                "rules": [
                    {
                        "effect": "Allow",
                        "resource": "servers:*",
                        "action": ["read"],
                        "condition": "user.role ==",
                    }
                ],
            },
        )
        assert bad.status == 422
        body = await bad.json()
        assert body["error"].startswith("Rule 0: invalid condition")
        assert body["details"]["rules"]["0"]["condition"]
        resp = await client.post(
            "/policies",
            headers=bearer(admin),
            json={
                "name": "new_policy",
                "version": "1.0.0",
                "rules": [
                    {
                        "effect": "Allow",
                        "resource": "servers:*",
                        "action": ["create", "read"],
                        "condition": "user.role == 'admin'",
                    }
                ],
            },
        )
        assert resp.status == 201
        created = (await resp.json())["data"]
        assert set(created) == {"id", "name", "version"}
        pid = created["id"]
        upd = await client.put(
            f"/policies/{pid}",
            headers=bearer(admin),
            json={
                "name": "updated_policy",
                "rules": [{"effect": "Deny", "resource": "servers:*", "action": ["delete"]}],
            },
        )
        assert (await upd.json()) == {"success": True, "data": "Policy updated successfully"}
        got = (await (await client.get(f"/policies/{pid}", headers=bearer(admin))).json())["data"]
        assert got["name"] == "updated_policy"
        assert got["rules"] == [
            {"effect": "Deny", "resource": "servers:*", "action": ["delete"], "condition": None}
        ]
        assert (await client.delete(f"/policies/{pid}", headers=bearer(admin))).status == 200
    finally:
        await _stop(task)
    assert [e["change"] for e in events if e["policy_id"] == pid] == [
        "created",
        "updated",
        "deleted",
    ]


async def test_evaluate_explains(make_client: Factory) -> None:
    client = await make_client()
    admin = (await login(client))["token"]
    await client.post(
        "/policies",
        headers=bearer(admin),
        json={
            "name": "no_prod_delete",
            "rules": [{"effect": "Deny", "resource": "servers:prod-*", "action": ["delete"]}],
        },
    )
    resp = await client.post(
        "/policies/evaluate",
        headers=bearer(admin),
        json={
            "user": {"id": "u1", "username": "op", "roles": ["operator"]},
            "action": "delete",
            "resource": "servers:prod-1",
            "context": {"method": "DELETE"},
        },
    )
    data = (await resp.json())["data"]
    assert data["allowed"] is False
    assert data["matched_rules"][0]["policy_name"] == "no_prod_delete"
    resp = await client.post(
        "/policies/evaluate",
        headers=bearer(admin),
        json={"user": {"roles": ["operator"]}, "action": "create", "resource": "servers:web"},
    )
    data = (await resp.json())["data"]
    assert data["allowed"] is True
    assert data["matched_rules"][0]["policy_id"] == "default-operator"
    for role, action, resource, allowed in (
        ("viewer", "read", "tasks:1", True),
        ("viewer", "create", "servers:a", False),
        ("auditor", "read", "audit:*", True),
        ("auditor", "create", "servers:a", False),
        ("admin", "anything", "webhooks:x", True),
        ("operator", "read", "webhooks:x", False),
    ):
        resp = await client.post(
            "/policies/evaluate",
            headers=bearer(admin),
            json={"user": {"roles": [role]}, "action": action, "resource": resource},
        )
        assert (await resp.json())["data"]["allowed"] is allowed, (role, action, resource)
    # A context value CEL cannot hold (beyond 64 bits) is an evaluation error, not a 500.
    await client.post(
        "/policies",
        headers=bearer(admin),
        json={
            "name": "only_small_batches",
            "rules": [
                {
                    "effect": "Deny",
                    "resource": "batches:*",
                    "action": ["execute"],
                    "condition": "request.size > 10",
                }
            ],
        },
    )
    resp = await client.post(
        "/policies/evaluate",
        headers=bearer(admin),
        json={
            "user": {"roles": ["admin"]},
            "action": "execute",
            "resource": "batches:b1",
            "context": {"size": 2**70},
        },
    )
    assert resp.status == 200, await resp.text()
    data = (await resp.json())["data"]
    assert data["allowed"] is False
    assert "context cannot be evaluated" in data["errors"][0]


async def test_audit_search_filters_and_idempotent_ingest(make_client: Factory) -> None:
    client = await make_client()
    admin = (await login(client))["token"]
    svc_resp = await client.post(
        "/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": "orchestrator",
            "client_secret": TEST_ENV["SERVICE_CLIENTS"].split(":", 1)[1],
        },
    )
    svc = (await svc_resp.json())["data"]["access_token"]
    events = [
        {
            "id": f"evt-{i}",
            "timestamp": f"2026-01-0{i}T10:00:00Z",
            "user_id": f"user-{i % 2}",
            "action": "server.create" if i % 2 else "server.delete",
            "resource": f"servers/web-0{i}",
            "result": "success",
            "details": {"k.with.dots": i, "$dollar": "x", "password": "hunter2"},
        }
        for i in range(1, 6)
    ]
    for event in events:
        resp = await client.post("/audit/events", headers=bearer(svc), json=event)
        assert resp.status == 201, await resp.text()
    again = await client.post("/audit/events", headers=bearer(svc), json=events[0])
    assert again.status == 200
    assert (await again.json())["data"] == {"id": "evt-1", "duplicate": True}

    async def search(**params: str) -> tuple[list[dict[str, Any]], Any]:
        resp = await client.get("/audit/logs", params=params, headers=bearer(admin))
        assert resp.status == 200, await resp.text()
        return (await resp.json())["data"], resp.headers

    data, _ = await search(action="server.create")
    assert [e["id"] for e in data] == ["evt-5", "evt-3", "evt-1"]  # newest first
    assert data[0]["details"]["k.with.dots"] == 5
    assert data[0]["details"]["password"] == "[redacted]"
    data, _ = await search(user_id="user-0")
    assert [e["id"] for e in data] == ["evt-4", "evt-2"]
    data, _ = await search(resource="servers/web-03")
    assert [e["id"] for e in data] == ["evt-3"]
    data, _ = await search(**{"from": "2026-01-02T00:00:00Z", "to": "2026-01-04T00:00:00Z"})
    assert [e["id"] for e in data] == ["evt-3", "evt-2"]
    data, headers = await search(**{"to": "2026-01-31T00:00:00Z", "limit": "2", "offset": "1"})
    assert [e["id"] for e in data] == ["evt-4", "evt-3"]
    assert headers["X-Total-Count"] == "5"
    assert headers["X-Limit"] == "2"
    assert headers["X-Offset"] == "1"
    assert 'rel="next"' in headers["Link"]
    # every login and user change is in there too
    data, _ = await search(action="auth.login")
    assert data
    assert data[0]["result"] == "success"


async def service_token(client: TestClient[Any, Any]) -> str:
    resp = await client.post(
        "/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": "orchestrator",
            "client_secret": TEST_ENV["SERVICE_CLIENTS"].split(":", 1)[1],
        },
    )
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["data"]["access_token"])


def audit_event(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"batch-{i}",
        "timestamp": "2026-02-01T10:00:00Z",
        "user_id": "user-b",
        "action": "batch.test",
        "resource": f"servers/b-{i}",
        "result": "success",
        "details": {"n": i, "token": "secret-value"},
        **extra,
    }


async def test_audit_batch_ingest_is_idempotent_and_validated(make_client: Factory) -> None:
    client = await make_client()
    admin = (await login(client))["token"]
    svc = await service_token(client)
    events = [audit_event(i) for i in range(300)]

    resp = await client.post("/audit/events", headers=bearer(svc), json={"events": events})
    assert resp.status == 201, await resp.text()
    data = (await resp.json())["data"]
    assert (data["stored"], data["duplicates"]) == (300, 0)
    assert data["results"][0] == {"id": "batch-0", "duplicate": False}
    assert [r["id"] for r in data["results"]] == [e["id"] for e in events]

    # The same batch again (a retry after a lost answer): nothing stored twice.
    again = await client.post("/audit/events", headers=bearer(svc), json={"events": events})
    assert again.status == 200, await again.text()
    data = (await again.json())["data"]
    assert (data["stored"], data["duplicates"]) == (0, 300)
    assert all(r["duplicate"] for r in data["results"])

    # Partly new, one id twice in the batch; the single form sees batch ids too.
    mixed = [events[0], audit_event(300), audit_event(300)]
    resp = await client.post("/audit/events", headers=bearer(svc), json={"events": mixed})
    assert resp.status == 201, await resp.text()
    assert [r["duplicate"] for r in (await resp.json())["data"]["results"]] == [True, False, True]
    single = await client.post("/audit/events", headers=bearer(svc), json=audit_event(7))
    assert single.status == 200
    assert (await single.json())["data"] == {"id": "batch-7", "duplicate": True}

    logs = await client.get(
        "/audit/logs", params={"action": "batch.test", "limit": "1000"}, headers=bearer(admin)
    )
    assert logs.status == 200
    assert logs.headers["X-Total-Count"] == "301"
    entry = next(e for e in (await logs.json())["data"] if e["id"] == "batch-5")
    assert entry["details"] == {"n": 5, "token": "[redacted]"}
    assert entry["resource"] == "servers/b-5"

    # Bad input: the error envelope with field details, nothing stored.
    bad_bodies: list[Any] = [
        {"events": []},
        {"events": [audit_event(i + 1000) for i in range(501)]},
        {"events": "not-a-list"},
        {"events": [audit_event(400), audit_event(401, timestamp="yesterday")]},
        {"events": [audit_event(402)], "id": "x"},
        {"events": [{**audit_event(403), "extra": 1}]},
    ]
    for body in bad_bodies:
        resp = await client.post("/audit/events", headers=bearer(svc), json=body)
        assert resp.status == 422, (body if len(str(body)) < 300 else "large", await resp.text())
        payload = await resp.json()
        assert payload["success"] is False
        assert isinstance(payload["error"], str)
        assert "events" in payload["details"] or "id" in payload["details"], payload
    # Only a service token may ingest, batch or not (a user's token is the wrong type).
    refresh = (await login(client))["refresh_token"]
    for headers, status in ((bearer(admin), 401), (bearer(refresh), 401), ({}, 401)):
        resp = await client.post(
            "/audit/events", headers=headers, json={"events": [audit_event(500)]}
        )
        assert resp.status == status, await resp.text()
        assert (await resp.json())["success"] is False
    logs = await client.get(
        "/audit/logs", params={"action": "batch.test", "limit": "1"}, headers=bearer(admin)
    )
    assert logs.headers["X-Total-Count"] == "301"


async def test_seeding_and_bootstrap_are_race_free(make_client: Factory) -> None:
    client = await make_client()
    ctx = ctx_of(client)
    await ctx.repos.policies.collection.delete_many({})
    await ctx.repos.users.collection.delete_many({})
    await ctx.repos.policies.markers.delete_many({})
    await asyncio.gather(
        *(ctx.policies.seed_defaults() for _ in range(4)),
        *(ctx.bootstrap.ensure_admin() for _ in range(4)),
    )
    assert await ctx.repos.policies.collection.count_documents({}) == 4
    assert await ctx.repos.users.collection.count_documents({"username": "admin"}) == 1
    # deleted defaults and a deleted admin do not come back on the next start
    await ctx.repos.policies.collection.delete_one({"_id": "default-viewer"})
    await ctx.policies.seed_defaults()
    assert await ctx.repos.policies.collection.count_documents({}) == 3


async def test_absolute_session_lifetime(make_client: Factory) -> None:
    client = await make_client(SESSION_MAX_SECONDS="2", ACCESS_TOKEN_TTL_SECONDS="60")
    session = await login(client)
    resp = await client.post("/auth/refresh", json={"token": session["token"]})
    assert resp.status == 200
    token = (await resp.json())["data"]["token"]
    await asyncio.sleep(2.2)
    resp = await client.post("/auth/refresh", json={"token": token})
    assert resp.status == 401
    assert (await client.get("/auth/me", headers=bearer(token))).status == 401


async def test_concurrent_refresh_of_one_token_has_one_winner(make_client: Factory) -> None:
    client = await make_client()
    session = await login(client)
    results = await asyncio.gather(
        *(client.post("/auth/refresh", json={"token": session["token"]}) for _ in range(5))
    )
    assert sorted(r.status for r in results) == [200, 401, 401, 401, 401]


async def test_redis_down_login_fails_closed_with_503(make_client: Factory) -> None:
    from tests.support.stack import devstack

    client = await make_client(REDIS_URL=f"redis://127.0.0.1:{devstack.free_port()}/0")
    resp = await client.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert resp.status == 503
    body = await resp.json()
    assert body["success"] is False
    assert "unavailable" in body["error"]


async def test_openapi_and_metrics(make_client: Factory) -> None:
    client = await make_client()
    await login(client)
    spec = await (await client.get("/openapi.json")).json()
    for path in (
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/auth/token",
        "/auth/introspect",
        "/auth/me",
        "/auth/mfa/enroll",
        "/auth/mfa/verify",
        "/users",
        "/users/{id}",
        "/users/{id}/mfa",
        "/policies",
        "/policies/{id}",
        "/policies/evaluate",
        "/audit/logs",
        "/audit/events",
        "/.well-known/jwks.json",
    ):
        assert path in spec["paths"], path
    metrics = await (await client.get("/metrics")).text()
    assert 'control_center_login_attempts_total{result="success"}' in metrics
    assert 'control_center_tokens_issued_total{typ="access"}' in metrics


async def test_retired_keys_stay_while_their_tokens_can_live(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    repo = KeyRepository(mongo_db)
    short, long = KeyRing(retention_seconds=0), KeyRing(retention_seconds=3600)
    await short.load_from_store(repo)
    for _ in range(4):
        await short.rotate(repo)
    await long.load_from_store(repo)
    await short.reload(repo)
    assert len(short.jwks()["keys"]) == 3
    assert len(long.jwks()["keys"]) == 5
    assert long.active is not None
    assert short.active is not None
    assert long.active.kid == short.active.kid
