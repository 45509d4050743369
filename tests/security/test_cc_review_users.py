"""Security review of user management (in-process app, real Redis and MongoDB-compatible
server): the last-admin race, re-authentication sharing the login failure budget, and
no user-id existence oracle for non-admins."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from control_center.deps import CONTAINER
from provisioning_common.timeutil import utcnow
from tests.integration import test_cc_app as shared
from tests.support.control_center import ADMIN_PASSWORD

Factory = Callable[..., Awaitable[TestClient[Any, Any]]]
PASSWORD = "Review-Pass-Word-1"


make_client = shared.make_client  # the same fixture (fresh database per app)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: TestClient[Any, Any], username: str, password: str) -> dict[str, Any]:
    resp = await client.post("/auth/login", json={"username": username, "password": password})
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = (await resp.json())["data"]
    return data


async def create(client: TestClient[Any, Any], admin: str, name: str, roles: list[str]) -> str:
    resp = await client.post(
        "/users",
        json={
            "username": name,
            "email": f"{name}@example.com",
            "password": PASSWORD,
            "roles": roles,
        },
        headers=bearer(admin),
    )
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["data"]["id"])


async def enabled_admins(client: TestClient[Any, Any], token: str) -> int:
    resp = await client.get("/users?role=admin&enabled=true", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    return len((await resp.json())["data"])


async def test_two_admins_demoting_each_other_leave_one_admin(make_client: Factory) -> None:
    client = await make_client()
    root = (await login(client, "admin", ADMIN_PASSWORD))["token"]
    # two admins besides the bootstrap one, which then steps down
    a_id = await create(client, root, "admin-a", ["admin"])
    b_id = await create(client, root, "admin-b", ["admin"])
    me = (await (await client.get("/auth/me", headers=bearer(root))).json())["data"]["id"]
    resp = await client.put(f"/users/{me}", json={"roles": ["viewer"]}, headers=bearer(root))
    assert resp.status == 200
    for _ in range(5):
        a = (await login(client, "admin-a", PASSWORD))["token"]
        b = (await login(client, "admin-b", PASSWORD))["token"]
        results = await asyncio.gather(
            client.put(f"/users/{b_id}", json={"roles": ["viewer"]}, headers=bearer(a)),
            client.put(f"/users/{a_id}", json={"enabled": False}, headers=bearer(b)),
        )
        statuses = sorted(r.status for r in results)
        assert statuses in ([200, 409], [200, 401], [200, 403]), statuses
        # one admin is left: restore the other for the next round
        a_left = results[0].status == 200
        survivor = (await login(client, "admin-a" if a_left else "admin-b", PASSWORD))["token"]
        assert await enabled_admins(client, survivor) == 1
        restore = {"roles": ["admin"]} if a_left else {"enabled": True}
        resp = await client.put(
            f"/users/{b_id if a_left else a_id}", json=restore, headers=bearer(survivor)
        )
        assert resp.status == 200, await resp.text()


async def test_wrong_current_password_spends_the_login_failure_budget(
    make_client: Factory,
) -> None:
    client = await make_client(LOGIN_FAILURE_LIMIT="3", LOCKOUT_BASE_SECONDS="30")
    root = (await login(client, "admin", ADMIN_PASSWORD))["token"]
    user_id = await create(client, root, "victim", ["viewer"])
    stolen = (await login(client, "victim", PASSWORD))["token"]
    for guess in ("Guess-Number-1", "Guess-Number-2", "Guess-Number-3"):
        resp = await client.put(
            f"/users/{user_id}",
            json={"password": "New-Pass-Word-9", "current_password": guess},
            headers=bearer(stolen),
        )
        assert resp.status == 401
    # the account is now locked: further guesses (even right ones) are refused
    resp = await client.put(
        f"/users/{user_id}",
        json={"password": "New-Pass-Word-9", "current_password": PASSWORD},
        headers=bearer(stolen),
    )
    assert resp.status == 429
    assert "Retry-After" in resp.headers
    resp = await client.post("/auth/login", json={"username": "victim", "password": PASSWORD})
    assert resp.status == 429
    logs = await client.get("/audit/logs?action=auth.lockout", headers=bearer(root))
    assert [e["user_id"] for e in (await logs.json())["data"]] == [user_id]


async def test_wrong_password_at_mfa_enrolment_spends_the_budget(make_client: Factory) -> None:
    client = await make_client(LOGIN_FAILURE_LIMIT="2", LOCKOUT_BASE_SECONDS="30")
    root = (await login(client, "admin", ADMIN_PASSWORD))["token"]
    await create(client, root, "victim2", ["viewer"])
    stolen = (await login(client, "victim2", PASSWORD))["token"]
    for guess in ("Guess-Number-1", "Guess-Number-2"):
        resp = await client.post(
            "/auth/mfa/enroll", json={"password": guess}, headers=bearer(stolen)
        )
        assert resp.status == 401
    resp = await client.post(
        "/auth/mfa/enroll", json={"password": PASSWORD}, headers=bearer(stolen)
    )
    assert resp.status == 429
    resp = await client.post("/auth/login", json={"username": "victim2", "password": PASSWORD})
    assert resp.status == 429


async def test_non_admin_cannot_probe_user_ids(make_client: Factory) -> None:
    client = await make_client()
    root = (await login(client, "admin", ADMIN_PASSWORD))["token"]
    other = await create(client, root, "other-user", ["viewer"])
    await create(client, root, "prober", ["operator"])
    prober = (await login(client, "prober", PASSWORD))["token"]
    existing = await client.put(
        f"/users/{other}", json={"email": "x@example.com"}, headers=bearer(prober)
    )
    missing = await client.put(
        f"/users/{uuid.uuid4()}", json={"email": "x@example.com"}, headers=bearer(prober)
    )
    assert existing.status == missing.status == 403
    assert await existing.json() == await missing.json()


async def test_a_dead_holders_admin_lease_expires(make_client: Factory) -> None:
    client = await make_client()
    root = (await login(client, "admin", ADMIN_PASSWORD))["token"]
    other = await create(client, root, "admin-c", ["admin"])
    ctx = client.server.app[CONTAINER]
    # a replica died while holding the lease: once expired it no longer blocks
    await ctx.repos.users.locks.insert_one(
        {"_id": "admins", "holder": "dead", "until": utcnow() - timedelta(seconds=1)}
    )
    resp = await client.put(f"/users/{other}", json={"enabled": False}, headers=bearer(root))
    assert resp.status == 200, await resp.text()
    assert await ctx.repos.users.locks.count_documents({}) == 0  # released after use
