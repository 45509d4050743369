"""AppKeys of the state feature."""

from __future__ import annotations

from aiohttp import web

from .service import StateContext

STATE_CONTEXT = web.AppKey("state_context", StateContext)
