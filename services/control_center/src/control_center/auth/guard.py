"""Authentication and role checks for handlers of every slice.

A request is authenticated by a bearer JWT of an allowed type (access by default),
verified strictly and checked against revocation, the user's state and the
session; then the general (per user) or service rate limit is counted."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from provisioning_common.errors import Forbidden, Unauthorized
from provisioning_common.tokens import TokenClaims, bearer_token
from provisioning_common.webapp import enforce_rate_limit

from ..deps import container_of


@dataclass(frozen=True)
class Principal:
    claims: TokenClaims
    user: dict[str, Any] | None  # None for service tokens

    @property
    def sub(self) -> str:
        return self.claims.sub

    @property
    def roles(self) -> tuple[str, ...]:
        if self.user is not None:
            return tuple(self.user.get("roles", []))
        return self.claims.roles

    @property
    def is_service(self) -> bool:
        return self.claims.typ == "service"

    def has_role(self, *roles: str) -> bool:
        return any(r in self.roles for r in roles)


PRINCIPAL = web.RequestKey("principal", Principal)


async def authenticate(request: web.Request, *, allow: tuple[str, ...] = ("access",)) -> Principal:
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise Unauthorized("Authentication required")
    container = container_of(request)
    claims = await container.verifier.verify(token, allow)
    active, user = await container.verifier.token_state(claims)
    if not active:
        raise Unauthorized("Token is no longer valid")
    principal = Principal(claims, user)
    request[PRINCIPAL] = principal
    limits = container.settings.common.rate_limits
    if principal.is_service:
        await enforce_rate_limit(
            request, "service", claims.sub, container.settings.auth.service_rate_per_minute
        )
    else:
        await enforce_rate_limit(request, "general", claims.sub, limits.general_per_minute)
    return principal


def require_roles(principal: Principal, roles: Iterable[str]) -> None:
    if not principal.has_role(*roles):
        raise Forbidden("Permission denied")


async def require(
    request: web.Request, *roles: str, allow: tuple[str, ...] = ("access",)
) -> Principal:
    """Authenticate, then demand one of ``roles``."""
    principal = await authenticate(request, allow=allow)
    require_roles(principal, roles)
    return principal
