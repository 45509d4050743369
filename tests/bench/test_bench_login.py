"""Bench: login throughput against the raw bcrypt baseline at the same cost, and
introspection throughput, measured in one run against the control center as a process.

Prints ``login/s``, raw ``bcrypt.checkpw/s`` (one thread, in this process), their
ratio and ``introspect req/s``. The cost is ``BENCH_BCRYPT_ROUNDS`` (default 10, so
the bench stays short; the ratio is what matters, and bcrypt dominates a login at
any production cost)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import aiohttp
import bcrypt

from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    login,
    service_token,
    start_control_center,
)

ROUNDS = int(os.environ.get("BENCH_BCRYPT_ROUNDS", "10"))
DURATION = float(os.environ.get("BENCH_SECONDS", "4"))
CONCURRENCY = 8


def raw_checkpw_per_second(rounds: int, duration: float) -> float:
    hashed = bcrypt.hashpw(ADMIN_PASSWORD.encode(), bcrypt.gensalt(rounds))
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < duration or count < 3:
        assert bcrypt.checkpw(ADMIN_PASSWORD.encode(), hashed)
        count += 1
    return count / (time.perf_counter() - start)


async def hammer(
    url: str, body: dict[str, Any], headers: dict[str, str], duration: float
) -> tuple[int, float]:
    done = 0
    stop = time.perf_counter() + duration

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            async with session.post(url, json=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()
            done += 1

    start = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
    return done, time.perf_counter() - start


async def test_bench_login_and_introspect(stack: Any) -> None:
    cc = start_control_center(
        stack.env(),
        BCRYPT_ROUNDS=str(ROUNDS),
        RATE_LIMIT_SERVICE_PER_MINUTE="10000000",
        LOG_LEVEL="ERROR",
    )
    try:
        # the admin's hash is at the bench cost: it was created by this process
        login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)
        logins, login_time = await hammer(
            f"{cc.url}/auth/login",
            {"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD},
            {},
            DURATION,
        )
        raw = await asyncio.to_thread(raw_checkpw_per_second, ROUNDS, DURATION / 2)
        token = login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"]
        svc = service_token(cc.url)
        intros, intro_time = await hammer(
            f"{cc.url}/auth/introspect",
            {"token": token},
            {"Authorization": f"Bearer {svc}"},
            DURATION,
        )
    finally:
        cc.stop()
    login_rate = logins / login_time
    intro_rate = intros / intro_time
    cpus = os.cpu_count() or 1
    print(
        f"\nbench login: bcrypt cost {ROUNDS}, {CONCURRENCY} concurrent clients, {cpus} CPUs\n"
        f"  login/s            {login_rate:8.1f}  ({logins} in {login_time:.1f}s)\n"
        f"  bcrypt.checkpw/s   {raw:8.1f}  (raw, one thread)\n"
        f"  ratio              {login_rate / raw:8.2f}  (login/s ÷ checkpw/s)\n"
        f"  introspect req/s   {intro_rate:8.1f}  ({intros} in {intro_time:.1f}s)"
    )
    # a login is one bcrypt check plus small work: it must not cost many checks
    assert login_rate / raw > 0.5
    assert intro_rate > 20
