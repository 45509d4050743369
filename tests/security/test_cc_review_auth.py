"""Security review of the auth endpoints (in-process app, real Redis and
MongoDB-compatible server): spoofed X-Forwarded-For, what introspection reports for
non-access tokens, and bad re-authentication input."""

from __future__ import annotations

import random
import uuid
from typing import Any

from redis.asyncio import Redis

from tests.security import test_cc_review_users as shared
from tests.security.test_cc_review_users import PASSWORD, Factory, bearer, create, login
from tests.support.control_center import (
    ADMIN_PASSWORD,
    ORCHESTRATOR_CLIENT_ID,
    ORCHESTRATOR_CLIENT_SECRET,
)

make_client = shared.make_client  # the same fixture (fresh database per app)


async def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(
    make_client: Factory, stack: Any
) -> None:
    # a Redis database of its own: the limiter keys by the peer (127.0.0.1), which
    # every in-process test shares
    redis_url = stack.env()["REDIS_URL"].rsplit("/", 1)[0] + f"/{random.randint(2, 15)}"
    redis = Redis.from_url(redis_url)
    await redis.flushdb()  # earlier runs of this test in the same minute
    await redis.aclose()
    client = await make_client(REDIS_URL=redis_url, RATE_LIMIT_AUTH_PER_MINUTE="3")
    statuses = []
    for n in range(4):
        resp = await client.post(
            "/auth/login",
            json={"username": "nobody", "password": "Wrong-Password-1"},
            headers={"X-Forwarded-For": f"203.0.113.{n + 1}"},
        )
        statuses.append(resp.status)
    assert statuses == [401, 401, 401, 429]


async def test_introspection_reports_the_token_type(make_client: Factory) -> None:
    client = await make_client()
    session = await login(client, "admin", ADMIN_PASSWORD)
    resp = await client.post(
        "/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": ORCHESTRATOR_CLIENT_ID,
            "client_secret": ORCHESTRATOR_CLIENT_SECRET,
        },
    )
    svc = (await resp.json())["data"]["access_token"]
    for token, typ in (
        (session["token"], "access"),
        (session["refresh_token"], "refresh"),
        (svc, "service"),
    ):
        resp = await client.post("/auth/introspect", json={"token": token}, headers=bearer(svc))
        data = (await resp.json())["data"]
        # active, but a caller must check typ == "access" before treating it as one
        assert data["active"] is True
        assert data["typ"] == typ


async def test_reauthentication_with_an_overlong_password_is_never_a_500(
    make_client: Factory,
) -> None:
    client = await make_client()
    root = (await login(client, "admin", ADMIN_PASSWORD))["token"]
    user_id = await create(client, root, "longpw", ["viewer"])
    token = (await login(client, "longpw", PASSWORD))["token"]
    resp = await client.put(
        f"/users/{user_id}",
        json={"password": "New-Pass-Word-9", "current_password": "é" * 40},
        headers=bearer(token),
    )
    assert resp.status == 401
    assert (await resp.json())["success"] is False


async def test_ingested_audit_details_never_keep_credentials(make_client: Factory) -> None:
    client = await make_client()
    root = await login(client, "admin", ADMIN_PASSWORD)
    resp = await client.post(
        "/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": ORCHESTRATOR_CLIENT_ID,
            "client_secret": ORCHESTRATOR_CLIENT_SECRET,
        },
    )
    svc = (await resp.json())["data"]["access_token"]
    details = {
        "api_key": "k-123",
        "ssh_private_key": "whatever",
        "headers": {"Authorization": "Bearer abc.def", "X-Trace": "t1"},
        "credentials": {"user": "u"},
        "note": root["token"],  # a JWT under an innocent key
        "blob": "-----BEGIN RSA PRIVATE KEY-----\nMIIB...\n-----END RSA PRIVATE KEY-----",
        "basic": ["Basic YWRtaW46YWRtaW4="],
        "server": "web-01",
    }
    event = {
        "id": f"orch:{uuid.uuid4().hex}",
        "timestamp": "2026-01-01T00:00:00Z",
        "action": "servers.create",
        "resource": "servers:web-01",
        "result": "success",
        "details": details,
    }
    resp = await client.post("/audit/events", json=event, headers=bearer(svc))
    assert resp.status == 201, await resp.text()
    resp = await client.get(
        "/audit/logs", params={"action": "servers.create"}, headers=bearer(root["token"])
    )
    stored = (await resp.json())["data"][0]["details"]
    assert stored == {
        "api_key": "[redacted]",
        "ssh_private_key": "[redacted]",
        "headers": {"Authorization": "[redacted]", "X-Trace": "t1"},
        "credentials": "[redacted]",
        "note": "[redacted]",
        "blob": "[redacted]",
        "basic": ["[redacted]"],
        "server": "web-01",
    }


async def test_credentials_are_never_cacheable(make_client: Factory) -> None:
    client = await make_client()
    resp = await client.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Pragma"] == "no-cache"
    token = (await resp.json())["data"]["token"]
    resp = await client.post(
        "/auth/mfa/enroll", json={"password": ADMIN_PASSWORD}, headers=bearer(token)
    )
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    resp = await client.post("/auth/refresh", json={"token": token})
    assert resp.headers["Cache-Control"] == "no-store"
    # the public key set stays cacheable
    resp = await client.get("/.well-known/jwks.json")
    assert resp.headers["Cache-Control"] == "public, max-age=60"
