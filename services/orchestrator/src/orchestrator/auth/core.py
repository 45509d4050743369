"""Auth wiring for the orchestrator app (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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
    failures_per_minute: int = 20

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
            ),
            failures_per_minute=env.int("AUTH_FAILURES_PER_MINUTE", 20, low=1),
        )


_SETTINGS = web.AppKey("auth_settings", AuthSettings)


async def authenticate_token(app: web.Application, token: str) -> Principal:
    return await app[AUTH].authenticate(token)


async def authorize(
    request: web.Request, action: str, resource: str, *, owner: str | None = None
) -> Principal:
    """403 unless the shared policy engine allows ``action`` on ``resource``. ``owner``
    (the ``sub`` of whoever created the record; "" when unknown or not one record) is
    shown to conditions as ``request.owner``."""
    return await authorize_all(request, [(action, resource, owner)])


async def authorize_all(
    request: web.Request, checks: Iterable[tuple[str, str, str | None]]
) -> Principal:
    """Every ``(action, resource, owner)`` must be allowed (403 at the first refused),
    before the caller does anything: a batch's tasks, a rollback's compensations."""
    if PRINCIPAL not in request:
        raise Unauthorized()
    principal = request[PRINCIPAL]
    base = {"ip": client_ip(request), "method": request.method, "path": request.path}
    seen: set[tuple[str, str, str | None]] = set()
    for action, resource, owner in checks:
        if (action, resource, owner) in seen:
            continue
        seen.add((action, resource, owner))
        await _check(request, principal, action, resource, {**base, "owner": owner or ""})
    request[_AUTHORIZED] = True
    return principal


async def may(
    app: web.Application,
    principal: Principal,
    action: str,
    resource: str,
    owner: str | None,
    request: Mapping[str, Any] | None = None,
) -> bool:
    """Whether ``principal`` may ``action`` on ``resource`` (no exception; for filters)."""
    decision = await app[AUTH].decide(
        principal, action, resource, {**(request or {}), "owner": owner or ""}
    )
    return decision.allowed


async def _check(
    request: web.Request,
    principal: Principal,
    action: str,
    resource: str,
    context: Mapping[str, Any],
) -> None:
    decision = await request.app[AUTH].decide(principal, action, resource, context)
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
    principal = await authenticate_request(request, token)
    request[PRINCIPAL] = principal
    limit = request.app[COMMON_SETTINGS].rate_limits.general_per_minute
    await enforce_rate_limit(request, "general", f"user:{principal.sub}", limit)
    response = await handler(request)
    if not request.get(_AUTHORIZED) and response.status < 400:
        # Deny by default: a handler that forgot to authorize leaks nothing.
        log.error("handler for %s returned without authorizing", request.path)
        raise Forbidden()
    return response


async def authenticate_request(request: web.Request, token: str) -> Principal:
    """Authenticate ``token``; a failure counts against the caller's address: past
    ``AUTH_FAILURES_PER_MINUTE`` failed authentications per address and window, a
    failure is answered 429 instead of 401 (valid tokens from the address still work,
    so users behind one proxy are not locked out by someone else's garbage)."""
    try:
        return await request.app[AUTH].authenticate(token)
    except Unauthorized:
        limit = request.app[_SETTINGS].failures_per_minute
        await enforce_rate_limit(request, "auth_failures", f"ip:{client_ip(request)}", limit)
        raise


def setup(app: web.Application) -> None:
    settings = AuthSettings.from_env(EnvReader())
    app.middlewares.append(auth_middleware)
    app[_SETTINGS] = settings

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
