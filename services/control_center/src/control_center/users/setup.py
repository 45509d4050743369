"""Wires the users feature: its routes (its services live in the container)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .routes import routes

if TYPE_CHECKING:
    from ..container import Container


def setup(app: web.Application, container: Container) -> None:
    app.router.add_routes(routes)
