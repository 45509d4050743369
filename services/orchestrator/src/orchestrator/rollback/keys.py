"""AppKeys of the rollback feature."""

from __future__ import annotations

from aiohttp import web

from .service import RollbackContext

ROLLBACK_CONTEXT = web.AppKey("rollback_context", RollbackContext)
