"""Wires authentication: the middleware (the control center client lives in the
container)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .core import auth_middleware

if TYPE_CHECKING:
    from ..container import Container


def setup(app: web.Application, container: Container) -> None:
    app.middlewares.append(auth_middleware)
