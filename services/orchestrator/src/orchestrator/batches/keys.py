"""AppKeys of the batch feature (state and rollback reuse its context)."""

from __future__ import annotations

from aiohttp import web

from .coordinator import BatchCoordinator
from .service import BatchContext
from .settings import BatchSettings

BATCH_SETTINGS = web.AppKey("batch_settings", BatchSettings)
BATCH_CONTEXT = web.AppKey("batch_context", BatchContext)
COORDINATOR = web.AppKey("batch_coordinator", BatchCoordinator)
