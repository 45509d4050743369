"""Token introspection (``POST /auth/introspect``): a positive answer is cached for at
most ``ttl`` seconds and dropped at once on a revocation event."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import Unauthorized
from ..tokens import TokenClaims
from .control_center import CC_ERRORS, ControlCenterUnavailable, ServiceTokenClient
from .principal import Principal

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Cached:
    principal: Principal
    until: float


class Introspector:
    def __init__(self, service: ServiceTokenClient, ttl: float) -> None:
        self.service = service
        self.ttl = ttl
        self._cache: dict[str, _Cached] = {}
        self._revoked_jti: dict[str, float] = {}  # jti -> exp (epoch)
        self._revoked_before: dict[str, float] = {}  # sub -> epoch

    def revoke(self, payload: Mapping[str, Any]) -> None:
        jti, sub = payload.get("jti"), payload.get("sub")
        if isinstance(jti, str):
            self._cache.pop(jti, None)
            exp = payload.get("exp")
            self._revoked_jti[jti] = (
                float(exp) if isinstance(exp, int | float) else time.time() + 86400
            )
        if isinstance(sub, str):
            before = payload.get("revoked_before")
            self._revoked_before[sub] = (
                float(before) if isinstance(before, int | float) else time.time()
            )
            for key in [k for k, v in self._cache.items() if v.principal.sub == sub]:
                self._cache.pop(key, None)
        self._prune()

    def _prune(self) -> None:
        now = time.time()
        for jti in [j for j, exp in self._revoked_jti.items() if exp < now]:
            del self._revoked_jti[jti]
        if len(self._cache) > 10000:
            mono = time.monotonic()
            for key in [k for k, v in self._cache.items() if v.until < mono]:
                del self._cache[key]

    def locally_revoked(self, claims: TokenClaims) -> bool:
        if claims.jti in self._revoked_jti:
            return True
        before = self._revoked_before.get(claims.sub)
        return before is not None and claims.iat < before

    async def check(self, token: str, claims: TokenClaims) -> Principal:
        cached = self._cache.get(claims.jti)
        if cached is not None and time.monotonic() < cached.until:
            return cached.principal
        try:
            status, body = await self.service.call("POST", "/auth/introspect", {"token": token})
        except CC_ERRORS as exc:
            raise ControlCenterUnavailable() from exc
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            log.warning("introspection answered %s", status)
            raise ControlCenterUnavailable()
        data = body["data"]
        if not data.get("active"):
            raise Unauthorized("Token is no longer valid")
        roles = data.get("roles", claims.roles)
        principal = Principal(
            sub=str(data.get("sub", claims.sub)),
            username=str(data.get("username", claims.username)),
            roles=tuple(r for r in roles if isinstance(r, str))
            if isinstance(roles, list)
            else claims.roles,
            jti=claims.jti,
            iat=claims.iat,
            exp=claims.exp,
            typ=claims.typ,
        )
        until = min(
            time.monotonic() + self.ttl, time.monotonic() + max(0, claims.exp - time.time())
        )
        self._cache[claims.jti] = _Cached(principal, until)
        return principal
