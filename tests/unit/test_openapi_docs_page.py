"""The /docs page: Swagger UI from packaged assets on our own origin, under a strict
Content-Security-Policy (no inline script, nothing from another origin)."""

from __future__ import annotations

from html.parser import HTMLParser

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from provisioning_common.envelope import ok
from provisioning_common.middleware import make_middlewares
from provisioning_common.openapi import DOCS_CSP, add_openapi_routes, build_spec


class _Page(HTMLParser):
    """The URLs a page loads, and whether it has inline script or style."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_script = False
        self.inline_style = False
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self._in_script = True
            if found.get("src"):
                self.urls.append(str(found["src"]))
        if tag == "link" and found.get("href"):
            self.urls.append(str(found["href"]))
        if tag == "style" or "style" in found or any(a.startswith("on") for a in found):
            self.inline_style = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_script = True


async def _hello(request: web.Request) -> web.Response:
    return ok({})


def _app() -> web.Application:
    app = web.Application(middlewares=make_middlewares("test"))
    app.router.add_get("/hello", _hello)
    add_openapi_routes(app, "Test API", "1.0.0")
    return app


def _directives(csp: str) -> dict[str, list[str]]:
    return {
        name: values for name, *values in (part.split() for part in csp.split(";") if part.strip())
    }


async def test_docs_page_loads_its_assets_from_our_own_origin() -> None:
    async with TestClient(TestServer(_app())) as client:
        page = await client.get("/docs")
        assert page.status == 200
        assert page.headers["Content-Security-Policy"] == DOCS_CSP
        parsed = _Page()
        parsed.feed(await page.text())
        assert not parsed.inline_script
        assert not parsed.inline_style
        # Swagger UI's icon, CSS and JS, and our initialiser
        assert len(parsed.urls) == 4
        base = URL("/docs")
        for raw in parsed.urls:
            url = URL(raw)
            assert not url.is_absolute(), raw  # our own origin
            assert not raw.startswith("/"), raw  # relative: the page works under a prefix
            asset = await client.get(str(base.join(url)))
            assert asset.status == 200, raw
            expected = {".css": "text/css", ".js": "javascript", ".png": "image/png"}[
                raw[raw.rindex(".") :]
            ]
            assert expected in asset.content_type, (raw, asset.content_type)
        init = await client.get("/docs/assets/docs.js")
        assert "SwaggerUIBundle" in await init.text()


async def test_docs_csp_is_strict() -> None:
    directives = _directives(DOCS_CSP)
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["connect-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert "unsafe" not in DOCS_CSP
    assert "http" not in DOCS_CSP


async def test_docs_assets_stay_inside_their_folders() -> None:
    async with TestClient(TestServer(_app())) as client:
        for path in ("/docs/assets/../docs_page.py", "/docs/assets/%2e%2e/docs_page.py"):
            response = await client.get(path)
            assert response.status in (403, 404), path


def test_spec_lists_no_asset_routes() -> None:
    spec = build_spec(_app(), title="t", version="1")
    assert not [path for path in spec["paths"] if path.startswith("/docs/")]
    assert "/docs" in spec["paths"]
