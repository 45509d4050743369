"""The one typed AppKey handlers use: ``request.app[CONTAINER]`` is the service's
:class:`~orchestrator.container.Container` (settings, clients, repositories and slice
services, built once by ``create_app``).

This module imports no feature at run time, so any route module may import it; the
container's type is imported for the type checker only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .container import Container

CONTAINER: web.AppKey[Container] = web.AppKey("container")


def container_of(target: web.Request | web.Application) -> Container:
    """The container of a request's app (or of an app)."""
    app = target.app if isinstance(target, web.Request) else target
    return app[CONTAINER]
