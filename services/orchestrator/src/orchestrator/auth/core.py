"""Auth wiring for the orchestrator app (see the package docstring)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

from provisioning_common.errors import Forbidden, Unauthorized
from provisioning_common.openapi import DOCS_ASSETS_PREFIX
from provisioning_common.remote_auth import Principal
from provisioning_common.tokens import bearer_token
from provisioning_common.webapp import client_ip, enforce_rate_limit

from ..deps import container_of

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC_PATHS = frozenset({"/health", "/ready", "/metrics", "/openapi.json", "/docs", "/ws"})
PRINCIPAL = web.RequestKey("principal", Principal)
_AUTHORIZED = web.RequestKey("authorized", bool)


async def authenticate_token(app: web.Application, token: str) -> Principal:
    return await container_of(app).auth.authenticate(token)


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
    decision = await container_of(app).auth.decide(
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
    decision = await container_of(request).auth.decide(principal, action, resource, context)
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
    if (
        request.path in PUBLIC_PATHS
        or request.path.startswith(DOCS_ASSETS_PREFIX)  # the /docs page's static files
        or request.method == "OPTIONS"
    ):
        return await handler(request)
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise Unauthorized("Authentication required")
    principal = await authenticate_request(request, token)
    request[PRINCIPAL] = principal
    limit = container_of(request).settings.common.rate_limits.general_per_minute
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
        return await container_of(request).auth.authenticate(token)
    except Unauthorized:
        limit = container_of(request).settings.auth.failures_per_minute
        await enforce_rate_limit(request, "auth_failures", f"ip:{client_ip(request)}", limit)
        raise
