"""Serving ``console/dist``: files, ``config.json``, security headers, not-built page."""

from __future__ import annotations

import html
import mimetypes
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from .settings import ConsoleSettings

CONSOLE_SETTINGS = web.AppKey("console_settings", ConsoleSettings)
MOUNT = "/ui"

_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(request: web.Request, control_center_url: str) -> str:
    """No inline script or style, nothing from elsewhere but the two APIs and ``/ws``."""
    host = request.host
    connect = ["'self'", _origin(control_center_url), f"ws://{host}", f"wss://{host}"]
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            "font-src 'self'",
            f"connect-src {' '.join(connect)}",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def _secure(request: web.Request, response: web.StreamResponse, settings: ConsoleSettings) -> None:
    response.headers["Content-Security-Policy"] = content_security_policy(
        request, settings.control_center_url
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"


def _page(status: int, title: str, text: str) -> web.Response:
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body><main><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(text)}</p></main></body></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html")


def _resolve(dist: Path, tail: str) -> Path | None:
    """The file ``tail`` names inside ``dist``; None outside it or missing."""
    if not tail or tail.endswith("/"):
        tail += "index.html"
    try:
        path = (dist / tail).resolve()
    except (OSError, ValueError):
        return None
    if dist not in path.parents or not path.is_file():
        return None
    return path


async def serve(request: web.Request, settings: ConsoleSettings) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        response: web.StreamResponse = _page(405, "Method not allowed", "The console is read-only.")
        response.headers["Allow"] = "GET, HEAD"
        return response
    if request.path == MOUNT:
        raise web.HTTPFound("ui/")  # relative: right under a gateway prefix too
    tail = request.path[len(MOUNT) + 1 :]
    dist = settings.dist_dir
    if tail == "config.json":
        response = web.json_response(
            {"control_center_url": settings.control_center_url, "orchestrator_url": ""},
            headers={"Cache-Control": "no-store"},
        )
    elif not (dist / "index.html").is_file():
        response = _page(
            503,
            "The console is not built",
            f"No build in {dist}: run `make setup` (npm ci && npm run build in console/), "
            "or set CONSOLE_DIST_DIR.",
        )
    else:
        path = _resolve(dist, tail)
        if path is None:
            response = _page(404, "Not found", "There is no such file in the console.")
        else:
            ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
            response = web.FileResponse(
                path, headers={"Content-Type": ctype or "application/octet-stream"}
            )
            # Vite names assets by content hash: cache them for good, never index.html.
            immutable = tail.startswith("assets/")
            response.headers["Cache-Control"] = (
                "public, max-age=31536000, immutable" if immutable else "no-cache"
            )
    _secure(request, response, settings)
    return response


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path == MOUNT or path.startswith(MOUNT + "/"):
        return await serve(request, request.app[CONSOLE_SETTINGS])
    return await handler(request)
