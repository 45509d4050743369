"""Shared fixtures: real Redis and a real MongoDB-compatible server per test
process (started by ``deploy/local/devstack.py`` unless ``MONGODB_URL`` /
``REDIS_URL`` are given), fresh databases per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from provisioning_common.mongo import open_client
from provisioning_common.redis_client import open_redis
from tests.support.stack import devstack


@pytest.fixture(scope="session")
def stack() -> Iterator[Any]:
    servers = devstack.start_servers()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
async def mongo_db(stack: Any) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client = open_client(stack.mongodb_url)
    name = f"test_{uuid.uuid4().hex[:12]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


@pytest.fixture
async def redis_client(stack: Any) -> AsyncIterator[Redis]:
    client = open_redis(stack.redis_url)
    try:
        yield client
    finally:
        await client.aclose()
