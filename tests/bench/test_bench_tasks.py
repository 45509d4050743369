"""Task engine bench (issue 4, "Done when"), measured in one run and printed:

1. no-op tasks (``PROVISIONING_CLI=/bin/true``) completed per second end to end (HTTP
   submit → Completed, one orchestrator, ENGINE_CONCURRENCY=C) ÷ raw
   ``asyncio.create_subprocess_exec`` spawns per second at the same concurrency;
2. submit→Running latency p50/p99 (client submit instant → the task's ``started_at``) at a
   submission rate below capacity;
3. ``GET /tasks?limit=50`` p50 with 100k tasks stored ÷ with 1k.

Run: ``make bench`` (or ``pytest -s tests/bench/test_bench_tasks.py``)."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import requests

from orchestrator.engine.model import COMPLETED, Defaults, TaskSpec, task_document
from provisioning_common.mongo import open_client
from provisioning_common.timeutil import utcnow
from tests.e2e.conftest import Services, services, start_orchestrator_process  # noqa: F401
from tests.support.processes import ServiceProcess

CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
N_TASKS = int(os.environ.get("BENCH_TASKS", "300"))
BIG = int(os.environ.get("BENCH_BIG", "100000"))


async def raw_spawns_per_second(n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            proc = await asyncio.create_subprocess_exec(
                "/bin/true",
                "servers",
                "create",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            await proc.communicate()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - started)


def _submit(url: str, headers: dict[str, str], i: int) -> tuple[str, float]:
    at = time.time()
    resp = requests.post(
        f"{url}/workflows/servers/create",
        headers=headers,
        timeout=30,
        json={"infra": f"bench-{i}", "settings": "c.k"},
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["data"]), at


def _count(url: str, headers: dict[str, str], status: str) -> int:
    resp = requests.get(
        f"{url}/tasks", params={"status": status, "limit": "1"}, headers=headers, timeout=30
    )
    return int(resp.headers["X-Total-Count"])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _list_p50(url: str, headers: dict[str, str], rounds: int = 40) -> float:
    samples = []
    with requests.Session() as session:
        for _ in range(rounds):
            started = time.perf_counter()
            resp = session.get(f"{url}/tasks", params={"limit": 50}, headers=headers, timeout=600)
            samples.append(time.perf_counter() - started)
            assert resp.status_code == 200
            assert len(resp.json()["data"]) == 50
    return statistics.median(samples)


async def _fill(mongodb_url: str, database: str, upto: int) -> None:
    client = open_client(mongodb_url, timeout_ms=60000, operation_timeout_ms=120_000)
    try:
        tasks = client[database]["tasks"]
        have = await tasks.estimated_document_count()
        defaults = Defaults("/bin/true", 60, 3)
        while have < upto:
            now = utcnow()
            chunk = []
            for i in range(min(2000, upto - have)):
                doc = task_document(
                    TaskSpec(
                        name="bench",
                        subcommand=("servers", "create"),
                        args=("--infra", f"fill-{have + i}"),
                    ),
                    defaults,
                    now,
                )
                doc.update(status=COMPLETED, started_at=now, completed_at=now, output="ok")
                chunk.append(doc)
            await tasks.insert_many(chunk, ordered=False)
            have += len(chunk)
    finally:
        await client.close()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_bench_tasks(
    services: Services,  # noqa: F811
    start_orchestrator_process: Callable[..., ServiceProcess],  # noqa: F811
) -> None:
    headers = services.headers()
    orch = start_orchestrator_process(
        MONGODB_DATABASE=f"bench_{uuid.uuid4().hex[:8]}",
        PROVISIONING_CLI="/bin/true",
        ENGINE_CONCURRENCY=str(CONCURRENCY),
        ENGINE_POLL_SECONDS="0.5",
        LOG_LEVEL="WARNING",
    )
    # 1. throughput, end to end vs raw spawns
    raw = asyncio.run(raw_spawns_per_second(N_TASKS, CONCURRENCY))
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        submitted = list(pool.map(lambda i: _submit(orch.url, headers, i), range(N_TASKS)))
    submit_took = time.perf_counter() - started
    while _count(orch.url, headers, "Completed") < N_TASKS:
        assert time.perf_counter() - started < 600, "bench tasks did not complete"
        time.sleep(0.25)
    e2e = N_TASKS / (time.perf_counter() - started)
    print(
        f"\n[bench] e2e {e2e:.1f} tasks/s, raw {raw:.1f} spawns/s "
        f"(the {N_TASKS} HTTP submissions took {submit_took:.1f}s)",
        flush=True,
    )
    # 2. submit → Running at a rate below capacity
    latencies: list[float] = []
    gap = 1.0 / max(1.0, e2e / 2)
    probe: list[tuple[str, float]] = []
    for i in range(100):
        probe.append(_submit(orch.url, headers, N_TASKS + i))
        time.sleep(gap)
    for task_id, at in probe:
        task = services.wait_task(task_id, url=orch.url, timeout=120)
        latencies.append(_ts(task["started_at"]) - at)
    print(f"[bench] submit->Running p50 {_pct(latencies, 0.5):.3f}s", flush=True)
    # 3. list latency with 1k vs 100k stored tasks, on an API-only replica (engine off,
    # so its queue scans do not compete with the measured requests)
    orch.stop()
    api = start_orchestrator_process(
        MONGODB_DATABASE=f"bench_list_{uuid.uuid4().hex[:8]}",
        ENGINE_ENABLED="false",
        LOG_LEVEL="WARNING",
    )
    database = api.env["MONGODB_DATABASE"]
    asyncio.run(_fill(services.stack_env["MONGODB_URL"], database, 1000))
    small = _list_p50(api.url, headers, rounds=20)
    print(f"[bench] list p50 at 1k {small * 1000:.1f} ms; filling to {BIG}", flush=True)
    fill_started = time.perf_counter()
    asyncio.run(_fill(services.stack_env["MONGODB_URL"], database, BIG))
    fill_took = time.perf_counter() - fill_started
    big = _list_p50(api.url, headers, rounds=5)
    assert len(submitted) == N_TASKS
    print(
        f"\n=== orchestrator task bench (concurrency {CONCURRENCY}, {N_TASKS} no-op tasks) ===\n"
        f"end-to-end no-op tasks/s      {e2e:8.1f}\n"
        f"raw create_subprocess_exec/s  {raw:8.1f}\n"
        f"ratio e2e / raw               {e2e / raw:8.3f}\n"
        f"submit->Running p50 / p99     {_pct(latencies, 0.5) * 1000:8.1f} ms / "
        f"{_pct(latencies, 0.99) * 1000:.1f} ms\n"
        f"GET /tasks?limit=50 p50 1k    {small * 1000:8.1f} ms\n"
        f"GET /tasks?limit=50 p50 {BIG // 1000}k  {big * 1000:8.1f} ms"
        f"  (filled in {fill_took:.0f}s)\n"
        f"ratio {BIG // 1000}k / 1k              {big / small:8.2f}\n"
        f"(measured {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}, {os.cpu_count()} CPUs)"
    )
