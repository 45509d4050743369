"""Serving behind an API gateway.

The gateway (a Kubernetes Ingress) forwards ``/api/orchestrator/...`` unchanged, with
no controller-specific rewrite. With ``PATH_PREFIX=/api/orchestrator`` the application
is mounted as a sub-application under the prefix for routing, and its handlers then see
the request with the prefix removed (``/health``, ``/tasks``), so path-based logic
(public paths, idempotency by path) is the same with and without a gateway. Absolute
paths the service hands out in ``Link`` and ``Location`` headers get the prefix back.
Paths outside the prefix get the contract's enveloped 404.

``X-Forwarded-Proto`` and ``X-Forwarded-Host`` are believed only when the direct peer
is one of ``TRUSTED_PROXIES`` (as ``X-Forwarded-For`` in
:func:`provisioning_common.webapp.client_ip`); from anyone else they are ignored, so a
client cannot make the service build URLs for a host of its choosing.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from .config import CommonSettings
from .middleware import make_middlewares
from .webapp import _is_trusted

_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$"
)
_SCHEMES = {"http", "https"}
_LINK_TARGET = re.compile(r"<(/(?!/)[^>]*)>")


def _first(value: str | None) -> str:
    """The value the outermost proxy set (the left-most of a comma-separated list)."""
    return (value or "").split(",")[0].strip()


def _forwarded(request: web.Request, trusted: tuple[str, ...]) -> dict[str, str]:
    if not trusted or not _is_trusted(request.remote or "", trusted):
        return {}
    changes: dict[str, str] = {}
    proto = _first(request.headers.get("X-Forwarded-Proto")).lower()
    if proto in _SCHEMES:
        changes["scheme"] = proto
    host = _first(request.headers.get("X-Forwarded-Host"))
    if host and _HOST.match(host):
        changes["host"] = host
    return changes


def gateway_middleware(prefix: str, trusted_proxies: tuple[str, ...]) -> Middleware:
    """Apply forwarded headers from trusted proxies and remove the mount prefix."""

    @web.middleware
    async def gateway(request: web.Request, handler: Handler) -> web.StreamResponse:
        changes: dict[str, str | URL] = {**_forwarded(request, trusted_proxies)}
        raw_path = request.rel_url.raw_path
        if prefix and len(request.match_info.apps) > 1 and raw_path.startswith(prefix):
            inner = raw_path[len(prefix) :] or "/"
            query = request.rel_url.raw_query_string
            changes["rel_url"] = URL(inner + (f"?{query}" if query else ""), encoded=True)
        if not changes:
            return await handler(request)
        # Routing already happened: the clone keeps the match info, only the URL changes.
        clone = request.clone(**changes)  # type: ignore[arg-type]
        try:
            return await handler(clone)
        finally:
            # Response hooks (rate-limit headers) read what handlers stored on the request.
            for key, value in clone.items():
                request[key] = value

    return gateway


def mount(app: web.Application, settings: CommonSettings) -> web.Application:
    """The application to serve: ``app`` itself, or a root mounting it at the prefix."""
    prefix = settings.path_prefix
    if not prefix:
        if settings.trusted_proxies:
            app.middlewares.insert(0, gateway_middleware("", settings.trusted_proxies))
        return app
    # The root application's limit is the one aiohttp applies to request bodies.
    root = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            gateway_middleware(prefix, settings.trusted_proxies),
            _outside_prefix(settings.service),
        ],
    )
    root.add_subapp(prefix, app)
    root.on_response_prepare.append(_prefix_links(prefix))
    return root


def _outside_prefix(service: str) -> Middleware:
    """Paths outside the prefix still get the contract's envelope (a 404)."""
    envelope = make_middlewares(service)[0]

    @web.middleware
    async def outside(request: web.Request, handler: Handler) -> web.StreamResponse:
        if len(request.match_info.apps) > 1:  # the mounted app answers in its own envelope
            return await handler(request)
        return await envelope(request, handler)

    return outside


def _prefix_links(prefix: str) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    async def add_prefix(request: web.Request, response: web.StreamResponse) -> None:
        if len(request.match_info.apps) < 2:
            return
        link = response.headers.get("Link")
        if link:
            response.headers["Link"] = _LINK_TARGET.sub(lambda m: f"<{prefix}{m.group(1)}>", link)
        location = response.headers.get("Location")
        if location and location.startswith("/") and not location.startswith("//"):
            response.headers["Location"] = prefix + location

    return add_prefix
