"""The envelope, the one error middleware, pagination and version negotiation,
served by a real aiohttp server on a loopback socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from marshmallow import Schema, fields, validate

from provisioning_common.envelope import format_timestamp, ok
from provisioning_common.errors import Conflict, TooManyRequests
from provisioning_common.middleware import make_middlewares
from provisioning_common.pagination import paginated, parse_page
from provisioning_common.validation import load_body
from provisioning_common.versioning import negotiate_version


class ItemSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=10))
    count = fields.Integer(required=True, strict=True)


async def create_item(request: web.Request) -> web.Response:
    body = await load_body(request, ItemSchema())
    return ok(body, status=201)


async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret internal detail")


async def db_down(request: web.Request) -> web.Response:
    from pymongo.errors import ServerSelectionTimeoutError

    raise ServerSelectionTimeoutError("127.0.0.1:1: connection refused")


async def db_busy(request: web.Request) -> web.Response:
    from pymongo.errors import OperationFailure

    raise OperationFailure("sqlite: step: database is locked (5) (SQLITE_BUSY)", code=1)


async def db_bug(request: web.Request) -> web.Response:
    from pymongo.errors import OperationFailure

    raise OperationFailure("unknown operator: $frobnicate", code=2)


async def conflict(request: web.Request) -> web.Response:
    raise Conflict("Already exists")


async def limited(request: web.Request) -> web.Response:
    raise TooManyRequests(7)


async def items(request: web.Request) -> web.Response:
    page = parse_page(request)
    data = list(range(120))
    return paginated(request, data[page.offset : page.offset + page.limit], len(data), page)


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application(middlewares=make_middlewares("test"), client_max_size=1024)
    app.router.add_post("/items", create_item)
    app.router.add_get("/items", items)
    app.router.add_get("/boom", boom)
    app.router.add_get("/conflict", conflict)
    app.router.add_get("/db-down", db_down)
    app.router.add_get("/db-busy", db_busy)
    app.router.add_get("/db-bug", db_bug)
    app.router.add_get("/limited", limited)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_valid_body_is_enveloped(client: TestClient[web.Request, web.Application]) -> None:
    resp = await client.post("/items", json={"name": "a", "count": 2})
    assert resp.status == 201
    assert await resp.json() == {"success": True, "data": {"name": "a", "count": 2}}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "Request body is not valid JSON"),
        (b"", 400, "Request body must be a JSON object"),
        (b"[1,2]", 422, "Validation error"),
        (b'{"name": "a", "count": "2"}', 422, "Validation error"),
        (b'{"name": "a", "count": 2, "extra": 1}', 422, "Validation error"),
        (b'{"name": "' + b"x" * 2000 + b'", "count": 1}', 413, "Request body too large"),
    ],
)
async def test_bad_bodies(
    client: TestClient[web.Request, web.Application], body: bytes, status: int, message: str
) -> None:
    resp = await client.post("/items", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == status
    payload = await resp.json()
    assert payload["success"] is False
    assert payload["error"] == message


async def test_field_errors_are_detailed(client: TestClient[web.Request, web.Application]) -> None:
    resp = await client.post("/items", json={"name": "", "extra": True})
    payload = await resp.json()
    assert resp.status == 422
    assert set(payload["details"]) == {"name", "count", "extra"}


async def test_unexpected_error_hides_details(
    client: TestClient[web.Request, web.Application],
) -> None:
    resp = await client.get("/boom", headers={"X-Request-ID": "req-123"})
    assert resp.status == 500
    assert await resp.json() == {"success": False, "error": "Internal server error"}
    assert resp.headers["X-Request-ID"] == "req-123"


async def test_unknown_route_and_method(client: TestClient[web.Request, web.Application]) -> None:
    resp = await client.get("/nope")
    assert (resp.status, (await resp.json())["error"]) == (404, "Not found")
    resp = await client.delete("/items")
    assert resp.status == 405
    assert (await resp.json())["success"] is False
    assert "GET" in resp.headers["Allow"]


async def test_api_errors_keep_status_and_headers(
    client: TestClient[web.Request, web.Application],
) -> None:
    resp = await client.get("/conflict")
    assert (resp.status, await resp.json()) == (409, {"success": False, "error": "Already exists"})
    resp = await client.get("/limited")
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "7"


async def test_request_id_generated_or_sanitised(
    client: TestClient[web.Request, web.Application],
) -> None:
    resp = await client.get("/items", headers={"X-Request-ID": "bad id\twith spaces"})
    rid = resp.headers["X-Request-ID"]
    assert rid != "bad id\twith spaces"
    assert len(rid) == 32


async def test_version_negotiation(client: TestClient[web.Request, web.Application]) -> None:
    for accept in ("application/vnd.provisioning.v1+json", "application/json", "*/*"):
        resp = await client.get("/items", headers={"Accept": accept})
        assert resp.status == 200, accept
    resp = await client.get("/items", headers={"Accept": "application/vnd.provisioning.v2+json"})
    assert resp.status == 406
    assert (await resp.json())["success"] is False


def test_negotiate_version_picks_supported() -> None:
    assert negotiate_version(None) == 1
    assert (
        negotiate_version(
            "application/vnd.provisioning.v9+json, application/vnd.provisioning.v1+json"
        )
        == 1
    )


async def test_pagination_headers(client: TestClient[web.Request, web.Application]) -> None:
    resp = await client.get("/items")
    assert resp.headers["X-Total-Count"] == "120"
    assert resp.headers["X-Limit"] == "50"
    assert resp.headers["X-Offset"] == "0"
    assert "offset=50" in resp.headers["Link"]
    assert 'rel="next"' in resp.headers["Link"]
    assert len((await resp.json())["data"]) == 50

    resp = await client.get("/items?limit=50&offset=100")
    assert len((await resp.json())["data"]) == 20
    assert 'rel="next"' not in resp.headers["Link"]
    assert 'rel="prev"' in resp.headers["Link"]


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=abc", "offset=-1"])
async def test_bad_pagination_is_400(
    client: TestClient[web.Request, web.Application], query: str
) -> None:
    resp = await client.get(f"/items?{query}")
    assert resp.status == 400
    assert (await resp.json())["success"] is False


def test_timestamps_are_utc_z() -> None:
    assert format_timestamp(datetime(2025, 9, 26, 10, 0, tzinfo=UTC)) == "2025-09-26T10:00:00Z"
    assert (
        format_timestamp(datetime(2025, 9, 26, 10, 0, 0, 123000, tzinfo=UTC))
        == "2025-09-26T10:00:00.123Z"
    )


async def test_unreachable_dependency_is_503(
    client: TestClient[web.Request, web.Application],
) -> None:
    resp = await client.get("/db-down")
    assert resp.status == 503
    body = await resp.json()
    assert body == {"success": False, "error": "Service temporarily unavailable"}
    assert resp.headers["Retry-After"] == "5"


async def test_busy_store_is_503_and_a_store_bug_is_500(
    client: TestClient[web.Request, web.Application],
) -> None:
    busy = await client.get("/db-busy")
    assert busy.status == 503
    assert busy.headers["Retry-After"] == "5"
    assert await busy.json() == {"success": False, "error": "Service temporarily unavailable"}
    bug = await client.get("/db-bug")
    assert bug.status == 500
    assert await bug.json() == {"success": False, "error": "Internal server error"}


@pytest.mark.parametrize(("tier", "status"), [("general", 200), ("batch", 200), ("auth", 503)])
async def test_rate_limiter_without_redis_fails_closed_only_for_auth(
    tier: str, status: int
) -> None:
    """With Redis down, a capacity limit lets an authenticated caller through; the
    limit that guards against credential guessing refuses (503 + Retry-After)."""
    from redis.asyncio import Redis

    from provisioning_common.config import CommonSettings
    from provisioning_common.ratelimit import RateLimiter
    from provisioning_common.webapp import COMMON_SETTINGS, RATE_LIMITER, enforce_rate_limit

    async def limited_route(request: web.Request) -> web.Response:
        await enforce_rate_limit(request, tier, "user:1", 5)
        return ok("served")

    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, socket_timeout=0.5)
    app = web.Application(middlewares=make_middlewares("test"))
    app[COMMON_SETTINGS] = CommonSettings(
        service="test",
        host="127.0.0.1",
        port=1,
        mongodb_url="mongodb://unused",
        database="unused",
        redis_url="redis://127.0.0.1:1",
    )
    app[RATE_LIMITER] = RateLimiter(dead)
    app.router.add_get("/limited", limited_route)
    try:
        async with TestClient(TestServer(app)) as test_client:
            resp = await test_client.get("/limited")
            assert resp.status == status
            if status == 503:
                assert resp.headers["Retry-After"] == "5"
    finally:
        await dead.aclose()
