"""Redis client factory (``redis.asyncio``). Redis holds nothing that cannot be
lost: events are stored in MongoDB too, revocations are persisted first."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

# Connections one process may hold. A burst beyond it waits (up to the timeout) for a
# free one instead of failing at once, as redis-py's default pool of 100 does.
MAX_CONNECTIONS = 256


def open_redis(url: str, *, timeout: float = 5.0, max_connections: int = MAX_CONNECTIONS) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        max_connections=max_connections,
        timeout=timeout,
    )
    return Redis.from_pool(pool)
