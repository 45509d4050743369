"""The console slice in-process: under a gateway prefix, not built, path traversal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from orchestrator.console.handlers import CONSOLE_SETTINGS, console_middleware
from orchestrator.console.settings import ConsoleSettings
from provisioning_common.config import CommonSettings, EnvReader
from provisioning_common.middleware import make_middlewares
from provisioning_common.prefix import mount

Factory = Callable[..., Any]
CC = "http://cc.example:9080"


def _app(dist: Path, prefix: str) -> web.Application:
    app = web.Application(middlewares=make_middlewares("orchestrator"))
    app[CONSOLE_SETTINGS] = ConsoleSettings(enabled=True, dist_dir=dist, control_center_url=CC)
    app.middlewares.insert(1, console_middleware)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"success": True, "data": "ok"})

    app.router.add_get("/health", health)
    common = CommonSettings.from_env(
        EnvReader({"PATH_PREFIX": prefix} if prefix else {}),
        service="orchestrator",
        default_port=9090,
        default_database="x",
    )
    return mount(app, common)


@pytest.fixture
async def client() -> AsyncIterator[Factory]:
    clients: list[TestClient[web.Request, web.Application]] = []

    async def make(dist: Path, prefix: str = "") -> TestClient[web.Request, web.Application]:
        c = TestClient(TestServer(_app(dist, prefix)))
        await c.start_server()
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.close()


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text('<!doctype html><script type="module" src="./assets/a.js">')
    (root / "assets" / "a.js").write_text("export {};")
    (tmp_path / "secret.txt").write_text("outside")
    return root


async def test_served_under_the_gateway_prefix(client: Factory, dist: Path) -> None:
    c = await client(dist, "/api/orchestrator")
    index = await c.get("/api/orchestrator/ui/")
    assert index.status == 200
    assert "script-src 'self'" in index.headers["Content-Security-Policy"]
    assert "http://cc.example:9080" in index.headers["Content-Security-Policy"]
    moved = await c.get("/api/orchestrator/ui", allow_redirects=False)
    assert moved.status == 302
    assert moved.headers["Location"] == "ui/"
    config = await (await c.get("/api/orchestrator/ui/config.json")).json()
    assert config == {"control_center_url": CC, "orchestrator_url": ""}
    asset = await c.get("/api/orchestrator/ui/assets/a.js")
    assert asset.status == 200
    assert asset.headers["Content-Type"].startswith("text/javascript")
    assert (await c.get("/ui/")).status == 404  # outside the prefix: the API's 404
    assert (await c.get("/api/orchestrator/health")).status == 200  # the API still answers


async def test_no_file_outside_the_build(client: Factory, dist: Path) -> None:
    c = await client(dist)
    for path in ("/ui/../secret.txt", "/ui/%2e%2e/secret.txt", "/ui/assets/../../secret.txt"):
        resp = await c.get(path)
        assert resp.status == 404, path
        assert "outside" not in await resp.text()
    assert (await c.get("/ui/missing.js")).status == 404
    assert (await c.post("/ui/")).status == 405


async def test_not_built_is_a_clear_503(client: Factory, tmp_path: Path) -> None:
    c = await client(tmp_path / "nowhere")
    resp = await c.get("/ui/")
    assert resp.status == 503
    text = await resp.text()
    assert "The console is not built" in text
    assert "make setup" in text
    assert "Content-Security-Policy" in resp.headers
    # config.json does not depend on the build
    assert (await c.get("/ui/config.json")).status == 200
