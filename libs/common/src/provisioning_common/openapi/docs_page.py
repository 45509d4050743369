"""``GET /openapi.json`` and the ``GET /docs`` page.

The page is Swagger UI, served from the ``swagger-ui-py`` package's static files (no
CDN: it works offline) under ``/docs/swagger-ui/``, started by this package's
``assets/docs.js`` under ``/docs/assets/``. Its Content-Security-Policy allows scripts,
styles and requests from its own origin only, and no inline script at all."""

from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path

from aiohttp import web

from ..envelope import dumps
from .spec import build_spec

DOCS_PATH = "/docs"
# Everything the page loads lives under this prefix: a service whose auth middleware
# lists public paths must let it through, as it does ``/docs``.
DOCS_ASSETS_PREFIX = "/docs/"
_SWAGGER_UI_ROUTE = "/docs/swagger-ui"
_OWN_ASSETS_ROUTE = "/docs/assets"

_OWN_ASSETS = Path(str(importlib.resources.files("provisioning_common.openapi") / "assets"))
DOCS_HTML = (_OWN_ASSETS / "docs.html").read_text(encoding="utf-8")

# The page talks to nothing but its own origin; data: images are the icons inlined in
# swagger-ui.css.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def swagger_ui_dir() -> Path:
    """The static files of ``swagger-ui-py`` (Swagger UI's ``dist``), found without
    importing the package: its Python code (page templates with Jinja2 and YAML
    configuration) is not used here, only its files."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed: the /docs page needs it")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def add_openapi_routes(app: web.Application, title: str, version: str) -> None:
    """Serve ``GET /openapi.json``, ``GET /docs`` and the page's assets; the document is
    built once, on first request, when every route is registered."""
    cache: dict[str, str] = {}

    async def openapi_json(request: web.Request) -> web.Response:
        if "spec" not in cache:
            cache["spec"] = dumps(build_spec(request.app, title=title, version=version))
        return web.Response(text=cache["spec"], content_type="application/json")

    async def docs(request: web.Request) -> web.Response:
        return web.Response(
            text=DOCS_HTML, content_type="text/html", headers={"Content-Security-Policy": DOCS_CSP}
        )

    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get(DOCS_PATH, docs)
    app.router.add_static(_SWAGGER_UI_ROUTE, swagger_ui_dir())
    app.router.add_static(_OWN_ASSETS_ROUTE, _OWN_ASSETS)
