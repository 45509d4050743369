"""Workflow submissions: one task each (DESIGN §5 table), with ``Idempotency-Key``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from provisioning_common.webapp import DATABASE

from .bounds import BOUNDS, Bounds
from .keys import IDEMPOTENCY
from .repository import IdempotencyRepository
from .routes import routes

__all__ = ["setup"]


def setup(app: web.Application) -> None:
    app[BOUNDS] = Bounds.from_env()
    app.router.add_routes(routes)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[IDEMPOTENCY] = IdempotencyRepository(app[DATABASE])
        yield

    app.cleanup_ctx.append(ctx)
