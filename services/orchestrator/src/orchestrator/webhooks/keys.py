"""AppKey of the webhook service (set by ``webhooks.setup``)."""

from __future__ import annotations

from aiohttp import web

from .service import WebhookService

WEBHOOKS = web.AppKey("webhooks", WebhookService)
