"""Redis client factory (``redis.asyncio``). Redis holds nothing that cannot be
lost: events are stored in MongoDB too, revocations are persisted first."""

from __future__ import annotations

from redis.asyncio import Redis


def open_redis(url: str, *, timeout: float = 5.0) -> Redis:
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )
