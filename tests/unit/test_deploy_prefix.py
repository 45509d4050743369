"""Gateway routing: the path prefix mount and forwarded headers from trusted proxies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from provisioning_common.config import CommonSettings, EnvReader
from provisioning_common.middleware import make_middlewares
from provisioning_common.pagination import page_headers, parse_page
from provisioning_common.prefix import mount
from provisioning_common.webapp import RATE_HEADERS, _add_rate_headers

Factory = Callable[..., Any]


def settings(**env: str) -> CommonSettings:
    return CommonSettings.from_env(
        EnvReader(env), service="orchestrator", default_port=9090, default_database="x"
    )


def inner_app() -> web.Application:
    app = web.Application(middlewares=make_middlewares("orchestrator"))

    async def echo(request: web.Request) -> web.Response:
        page = parse_page(request)
        return web.json_response(
            {"url": str(request.url), "path": request.path, "scheme": request.scheme},
            headers=page_headers(request, page, 500),
        )

    async def raw_echo(request: web.Request) -> web.Response:
        return web.json_response({"url": str(request.url), "path": request.path})

    async def upload(request: web.Request) -> web.Response:
        return web.json_response({"size": len(await request.read())})

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/tasks")

    async def limited(request: web.Request) -> web.Response:
        request[RATE_HEADERS] = {"X-RateLimit-Limit": "7"}
        return web.json_response({})

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            await sock.send_str(f"{request.path}:{msg.data}")
        return sock

    app.on_response_prepare.append(_add_rate_headers)
    app.router.add_get("/ws", ws)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/limited", limited)
    app.router.add_get("/health", echo)
    app.router.add_get("/tasks", echo)
    app.router.add_get("/echo", raw_echo)
    app.router.add_post("/upload", upload)
    return app


@pytest.fixture
async def client() -> AsyncIterator[Factory]:
    clients: list[TestClient[web.Request, web.Application]] = []

    async def make(common: CommonSettings) -> TestClient[web.Request, web.Application]:
        c = TestClient(TestServer(mount(inner_app(), common)))
        await c.start_server()
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.close()


async def test_no_prefix_serves_at_root(client: Factory) -> None:
    c = await client(settings())
    resp = await c.get("/health")
    assert resp.status == 200
    assert (await resp.json())["path"] == "/health"


async def test_prefix_mounts_every_route_under_it(client: Factory) -> None:
    c = await client(settings(PATH_PREFIX="/api/orchestrator/"))
    resp = await c.get("/api/orchestrator/health")
    assert resp.status == 200
    assert (await resp.json())["path"] == "/health"
    resp = await c.get("/api/orchestrator/tasks", params={"limit": "10"})
    assert resp.status == 200
    assert '</api/orchestrator/tasks?limit=10&offset=10>; rel="next"' in resp.headers["Link"]


@pytest.mark.parametrize("path", ["/health", "/tasks", "/api/other/tasks", "/api/orchestratorx"])
async def test_outside_prefix_is_an_enveloped_404(client: Factory, path: str) -> None:
    c = await client(settings(PATH_PREFIX="/api/orchestrator"))
    resp = await c.get(path)
    assert resp.status == 404
    assert await resp.json() == {"success": False, "error": "Not found"}
    assert resp.headers["X-Request-ID"]


async def test_unknown_route_inside_prefix_is_an_enveloped_404(client: Factory) -> None:
    c = await client(settings(PATH_PREFIX="/api/orchestrator"))
    resp = await c.get("/api/orchestrator/nope")
    assert resp.status == 404
    assert await resp.json() == {"success": False, "error": "Not found"}


async def test_body_limit_still_applies_under_the_prefix(client: Factory) -> None:
    common = replace(settings(PATH_PREFIX="/api/orchestrator"), max_body_bytes=2048)
    c = await client(common)
    resp = await c.post("/api/orchestrator/upload", data=b"x" * 1000)
    assert resp.status == 200
    resp = await c.post("/api/orchestrator/upload", data=b"x" * 5000)
    assert resp.status == 413
    assert (await resp.json())["success"] is False


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.com"}


async def test_handlers_see_the_path_without_the_prefix(client: Factory) -> None:
    """Path-based logic (public paths, idempotency by path) works unchanged."""
    c = await client(settings(PATH_PREFIX="/api/orchestrator"))
    body = await (await c.get("/api/orchestrator/echo", params={"a": "1 2"})).json()
    assert body["path"] == "/echo"
    assert body["url"].endswith("/echo?a=1+2") or body["url"].endswith("/echo?a=1%202")


async def test_location_gets_the_prefix_back(client: Factory) -> None:
    c = await client(settings(PATH_PREFIX="/api/orchestrator"))
    resp = await c.get("/api/orchestrator/redirect", allow_redirects=False)
    assert resp.headers["Location"] == "/api/orchestrator/tasks"


async def test_state_set_by_handlers_reaches_response_hooks(client: Factory) -> None:
    """The rate-limit headers are attached by a response hook from request state."""
    c = await client(settings(PATH_PREFIX="/api/orchestrator", TRUSTED_PROXIES="127.0.0.1"))
    resp = await c.get("/api/orchestrator/limited", headers=FORWARDED)
    assert resp.status == 200
    assert resp.headers["X-RateLimit-Limit"] == "7"


async def test_forwarded_headers_from_a_trusted_proxy(client: Factory) -> None:
    c = await client(settings(TRUSTED_PROXIES="127.0.0.0/8"))
    resp = await c.get("/tasks", params={"limit": "5"}, headers=FORWARDED)
    body = await resp.json()
    assert body["url"] == "https://api.example.com/tasks?limit=5"
    assert body["scheme"] == "https"


async def test_forwarded_headers_with_the_prefix(client: Factory) -> None:
    c = await client(settings(TRUSTED_PROXIES="127.0.0.1", PATH_PREFIX="/api/orchestrator"))
    resp = await c.get("/api/orchestrator/tasks", params={"limit": "5"}, headers=FORWARDED)
    body = await resp.json()
    assert body["url"] == "https://api.example.com/tasks?limit=5"
    assert resp.headers["Link"] == '</api/orchestrator/tasks?limit=5&offset=5>; rel="next"'


async def test_forwarded_headers_from_anyone_else_are_ignored(client: Factory) -> None:
    c = await client(settings(TRUSTED_PROXIES="10.0.0.0/8"))
    resp = await c.get("/tasks", headers=FORWARDED)
    body = await resp.json()
    assert body["scheme"] == "http"
    assert "api.example.com" not in body["url"]


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Forwarded-Host", "evil.example.com/path"),
        ("X-Forwarded-Host", "a b"),
        ("X-Forwarded-Host", "evil.example.com@x"),
        ("X-Forwarded-Proto", "javascript"),
    ],
)
async def test_malformed_forwarded_values_are_ignored(
    client: Factory, header: str, value: str
) -> None:
    c = await client(settings(TRUSTED_PROXIES="127.0.0.1"))
    resp = await c.get("/tasks", headers={header: value})
    assert resp.status == 200
    body = await resp.json()
    assert body["url"].startswith("http://127.0.0.1:")
    assert body["path"] == "/tasks"


async def test_websocket_under_the_prefix(client: Factory) -> None:
    c = await client(settings(PATH_PREFIX="/api/orchestrator", TRUSTED_PROXIES="127.0.0.1"))
    async with c.ws_connect("/api/orchestrator/ws", headers=FORWARDED) as sock:
        await sock.send_str("ping")
        assert await sock.receive_str(timeout=5) == "/ws:ping"
