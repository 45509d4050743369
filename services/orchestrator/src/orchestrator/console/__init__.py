"""The operator console: the static TypeScript app of ``console/`` (built into
``console/dist``) served under ``/ui/`` (and under ``PATH_PREFIX``), with a strict
Content-Security-Policy, and ``/ui/config.json`` telling it where the control center is.

The files are public (the app signs in against the control center itself), so they are
answered by a middleware placed before authentication, and they stay out of the OpenAPI
document. Settings: ``CONSOLE_ENABLED`` (true), ``CONSOLE_DIST_DIR`` (the repository's
``console/dist``), ``CONTROL_CENTER_PUBLIC_URL`` (default ``CONTROL_CENTER_URL``)."""

from __future__ import annotations

from aiohttp import web

from .handlers import CONSOLE_SETTINGS, console_middleware
from .settings import ConsoleSettings

__all__ = ["ConsoleSettings", "setup"]


def setup(app: web.Application, settings: ConsoleSettings) -> None:
    if not settings.enabled:
        return
    app[CONSOLE_SETTINGS] = settings
    # Right after the envelope middleware (the first one): before authentication.
    app.middlewares.insert(min(1, len(app.middlewares)), console_middleware)
