""":class:`RemoteAuth`, what a service uses: authenticate a token, decide a request
against the policies, and listen for revocations and policy changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from redis.asyncio import Redis

from ..errors import Unauthorized
from ..events import POLICIES_CHANNEL, REVOCATIONS_CHANNEL, EventBus
from ..policy import Decision
from ..tokens import TokenError
from .control_center import ControlCenter, ServiceTokenClient
from .introspection import Introspector
from .jwks import JwksCache
from .policies import PolicyCache
from .principal import Principal

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RemoteAuthConfig:
    control_center_url: str
    client_id: str
    client_secret: str
    issuer: str = "provisioning-control-center"
    audience: str = "provisioning"
    introspection_ttl: float = 30.0
    policy_max_age: float = 300.0
    http_timeout: float = 5.0


class RemoteAuth:
    def __init__(
        self, config: RemoteAuthConfig, session: aiohttp.ClientSession, redis: Redis | None = None
    ) -> None:
        self.config = config
        self.redis = redis
        cc = ControlCenter(session, config.control_center_url, config.http_timeout)
        self.jwks = JwksCache(cc)
        self.service = ServiceTokenClient(cc, config.client_id, config.client_secret)
        self.introspector = Introspector(self.service, config.introspection_ttl)
        self.policies = PolicyCache(self.service, max_age=config.policy_max_age)
        # Called with each revocation event (after the caches dropped it): long-lived
        # sessions (``/ws``) close at once instead of at their next check.
        self.revocation_listeners: list[Callable[[Mapping[str, Any]], None]] = []

    async def authenticate(self, token: str) -> Principal:
        try:
            claims = await self.jwks.decode(
                token, issuer=self.config.issuer, audience=self.config.audience, typ="access"
            )
        except TokenError as exc:
            raise Unauthorized(str(exc)) from exc
        if self.introspector.locally_revoked(claims) or await self._denylisted(claims.jti):
            raise Unauthorized("Token has been revoked")
        return await self.introspector.check(token, claims)

    async def _denylisted(self, jti: str) -> bool:
        if self.redis is None:
            return False
        try:
            return bool(await self.redis.exists(f"revoked:jti:{jti}"))
        except Exception as exc:  # Redis is only the fast path; introspection decides
            log.warning("denylist lookup failed: %s", type(exc).__name__)
            return False

    async def decide(
        self,
        principal: Principal,
        action: str,
        resource: str,
        request: Mapping[str, Any] | None = None,
    ) -> Decision:
        engine = await self.policies.get()
        return engine.evaluate(
            user=principal.user_context, action=action, resource=resource, request=request
        )

    async def listen(self) -> None:
        """Apply revocations and policy changes from Redis until cancelled; reconnects."""
        if self.redis is None:
            return
        bus = EventBus(self.redis)
        while True:
            try:
                async for channel, payload in bus.subscribe(REVOCATIONS_CHANNEL, POLICIES_CHANNEL):
                    if channel == REVOCATIONS_CHANNEL:
                        self.introspector.revoke(payload)
                        for listener in list(self.revocation_listeners):
                            try:
                                listener(payload)
                            except Exception:
                                log.exception("revocation listener failed")
                    elif channel == POLICIES_CHANNEL:
                        self.policies.invalidate()
                        try:
                            await self.policies.reload()
                        except Exception as exc:
                            log.warning("policy reload failed: %s", type(exc).__name__)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("auth event subscription lost (%s); reconnecting", type(exc).__name__)
                # Events may have been missed: forget what could be stale.
                self.introspector._cache.clear()
                self.policies.invalidate()
                await asyncio.sleep(1.0)
