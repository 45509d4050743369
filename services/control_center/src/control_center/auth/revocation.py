"""Revocation of tokens, sessions and every token of a user: the durable record in
MongoDB first, then the Redis fast path and the revocation event."""

from __future__ import annotations

import logging
import math
import time

from redis.asyncio import Redis

from provisioning_common.events import REVOCATIONS_CHANNEL, EventBus

from .ports import UserRecords
from .repository import SessionRepository, TokenRepository

log = logging.getLogger(__name__)

REVOKED_KEY = "revoked:jti:{}"


class Revocations:
    def __init__(
        self,
        tokens: TokenRepository,
        sessions: SessionRepository,
        users: UserRecords,
        redis: Redis,
        bus: EventBus,
    ) -> None:
        self._tokens = tokens
        self._sessions = sessions
        self._users = users
        self._redis = redis
        self._bus = bus

    async def revoke_jti(self, jti: str, exp: int, reason: str) -> None:
        """Durable record first (MongoDB), then the Redis fast path and the event."""
        await self._tokens.revoke(jti, exp, reason)
        ttl = exp - int(time.time())
        try:
            if ttl > 0:
                await self._redis.set(REVOKED_KEY.format(jti), "1", ex=ttl)
            await self._bus.publish(REVOCATIONS_CHANNEL, {"jti": jti, "exp": exp})
        except Exception as exc:  # the durable record exists; caches still expire within 30 s
            log.warning("could not publish revocation: %s", type(exc).__name__)

    async def revoke_session(self, sid: str, reason: str) -> None:
        await self._sessions.revoke(sid, reason)
        now = int(time.time())
        for doc in await self._tokens.live_of_session(sid, now):
            await self.revoke_jti(doc["_id"], int(doc["exp"]), reason)

    async def revoke_user(self, user_id: str, reason: str) -> None:
        """Every token of the user issued up to now stops working (disable, delete,
        role change)."""
        revoked_before = math.ceil(time.time())
        await self._users.update(user_id, {"revoked_before": revoked_before})
        for sid in await self._sessions.revoke_user(user_id, reason):
            await self.revoke_session(sid, reason)
        try:
            await self._bus.publish(
                REVOCATIONS_CHANNEL, {"sub": user_id, "revoked_before": revoked_before}
            )
        except Exception as exc:
            log.warning("could not publish user revocation: %s", type(exc).__name__)

    async def is_jti_revoked(self, jti: str) -> bool:
        try:
            if await self._redis.exists(REVOKED_KEY.format(jti)):
                return True
        except Exception as exc:  # Redis is a cache: the durable record decides
            log.warning("revocation cache unavailable: %s", type(exc).__name__)
        return await self._tokens.is_revoked(jti)
