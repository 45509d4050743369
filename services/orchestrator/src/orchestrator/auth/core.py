"""Auth wiring for the orchestrator app (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from provisioning_common.config import EnvReader
from provisioning_common.errors import Forbidden, Unauthorized
from provisioning_common.remote_auth import Principal, RemoteAuth, RemoteAuthConfig
from provisioning_common.tokens import bearer_token
from provisioning_common.webapp import COMMON_SETTINGS, REDIS, client_ip, enforce_rate_limit

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC_PATHS = frozenset({"/health", "/ready", "/metrics", "/openapi.json", "/docs", "/ws"})
AUTH = web.AppKey("remote_auth", RemoteAuth)
PRINCIPAL = web.RequestKey("principal", Principal)
_AUTHORIZED = web.RequestKey("authorized", bool)
_AUTH_SESSION = web.AppKey("auth_http_session", aiohttp.ClientSession)


@dataclass(frozen=True)
class AuthSettings:
    config: RemoteAuthConfig

    @classmethod
    def from_env(cls, env: EnvReader) -> AuthSettings:
        return cls(
            RemoteAuthConfig(
                control_center_url=env.str("CONTROL_CENTER_URL", "http://127.0.0.1:9080"),
                client_id=env.str("SERVICE_CLIENT_ID", "orchestrator"),
                client_secret=env.str("SERVICE_CLIENT_SECRET", ""),
                issuer=env.str("JWT_ISSUER", "provisioning-control-center"),
                audience=env.str("JWT_AUDIENCE", "provisioning"),
                introspection_ttl=env.float("INTROSPECTION_CACHE_SECONDS", 30.0, low=0.0),
                policy_max_age=env.float("POLICY_CACHE_SECONDS", 300.0, low=1.0),
            )
        )


async def authenticate_token(app: web.Application, token: str) -> Principal:
    return await app[AUTH].authenticate(token)


async def authorize(request: web.Request, action: str, resource: str) -> Principal:
    """403 unless the shared policy engine allows ``action`` on ``resource``."""
    if PRINCIPAL not in request:
        raise Unauthorized()
    principal = request[PRINCIPAL]
    decision = await request.app[AUTH].decide(
        principal,
        action,
        resource,
        {
            "ip": client_ip(request),
            "method": request.method,
            "path": request.path,
        },
    )
    request[_AUTHORIZED] = True
    if not decision.allowed:
        log.info(
            "denied",
            extra={
                "user": principal.username,
                "action": action,
                "resource": resource,
                "reason": decision.reason,
            },
        )
        raise Forbidden(f"Permission denied: '{action}' on '{resource}'")
    return principal


def requires(action: str, resource: Callable[[web.Request], str]) -> Callable[[Handler], Handler]:
    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def inner(request: web.Request) -> web.StreamResponse:
            await authorize(request, action, resource(request))
            return await handler(request)

        return inner

    return wrap


def authenticated_only(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def inner(request: web.Request) -> web.StreamResponse:
        request[_AUTHORIZED] = True
        return await handler(request)

    return inner


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or request.method == "OPTIONS":
        return await handler(request)
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise Unauthorized("Authentication required")
    principal = await request.app[AUTH].authenticate(token)
    request[PRINCIPAL] = principal
    limit = request.app[COMMON_SETTINGS].rate_limits.general_per_minute
    await enforce_rate_limit(request, "general", f"user:{principal.sub}", limit)
    response = await handler(request)
    if not request.get(_AUTHORIZED) and response.status < 400:
        # Deny by default: a handler that forgot to authorize leaks nothing.
        log.error("handler for %s returned without authorizing", request.path)
        raise Forbidden()
    return response


def setup(app: web.Application) -> None:
    settings = AuthSettings.from_env(EnvReader())
    app.middlewares.append(auth_middleware)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession()
        auth = RemoteAuth(settings.config, session, app[REDIS])
        app[AUTH] = auth
        listener = asyncio.create_task(auth.listen(), name="auth-listener")
        try:
            yield
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await session.close()

    app.cleanup_ctx.append(ctx)
