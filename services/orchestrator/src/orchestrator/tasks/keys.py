"""AppKey of the engine (set by ``tasks.setup``)."""

from __future__ import annotations

from aiohttp import web

from ..engine import Engine

ENGINE = web.AppKey("engine", Engine)
