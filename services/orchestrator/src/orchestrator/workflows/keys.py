from __future__ import annotations

from aiohttp import web

from .repository import IdempotencyRepository

IDEMPOTENCY = web.AppKey("idempotency_repository", IdempotencyRepository)
