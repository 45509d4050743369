"""Storage bench (issue 11: storage that does not slow down with history, and a
benchmark against Celery). One run measures side by side and prints:

1. no-op tasks/s end to end (``PROVISIONING_CLI=/bin/true``): BENCH_CLIENTS HTTP
   clients submit ``POST /workflows/servers/create``, timed from the first submission to
   the last task Completed; against raw ``asyncio.create_subprocess_exec`` spawns/s and
   Celery 5 (Redis broker and result backend, prefork worker) doing the same subprocess
   work, all at ENGINE_CONCURRENCY slots (goal: ours >= 0.5x Celery);
2. the same tasks/s with BENCH_HISTORY finished tasks (and their companion documents,
   ``tests/bench/history.py``) stored (goal: >= 0.9x fresh);
3. ``GET /tasks?limit=50`` and ``GET /tasks?status=Failed&limit=50`` p50/p95 at
   BENCH_HISTORY_SMALL and BENCH_HISTORY retained tasks (goal: <= 500 ms at 20k);
4. a soak: BENCH_SOAK_CLIENTS clients submitting for BENCH_SOAK_SECONDS; responses by
   status class (goal: 0 5xx) and ``SQLITE_BUSY`` / "database is locked" lines in the
   orchestrator's and FerretDB's logs (goal: 0);
5. submit -> Running p99 with BENCH_CLIENTS closed-loop clients (each submits, waits for
   its task to end, submits again; submit instant -> the task's ``started_at``; goal:
   <= 100 ms) and the orchestrator's RSS with the history stored (goal: < 250 MB).

Throughput is measured in BENCH_ROUNDS rounds (raw, Celery, ours fresh, ours with
history, in turn, so a drift in the machine's load hits all alike); the best of each is
reported, every round printed. Timings are printed, never asserted (a shared 2-core
machine is noisy); only correctness is (every task completes).

The bench starts its own control center and orchestrators (rate limits off, engine
timings at their defaults); completions are read from the events the orchestrators
publish on Redis (what ``/ws`` relays), so waiting adds no load to what is measured.

Sizes (env, defaults): BENCH_TASKS 300, BENCH_ROUNDS 3, BENCH_CLIENTS 8,
BENCH_CONCURRENCY 8, BENCH_HISTORY 20000, BENCH_HISTORY_SMALL 1000,
BENCH_HISTORY_OUTPUT_LINES 30, BENCH_LIST_ROUNDS 20, BENCH_LATENCY_TASKS 200,
BENCH_SOAK_SECONDS 60, BENCH_SOAK_CLIENTS 16, BENCH_CELERY_REDIS_DB 13.

Run: ``make bench`` (installs the ``bench`` dependency group: Celery), or quickly::

    BENCH_TASKS=60 BENCH_ROUNDS=1 BENCH_HISTORY=500 BENCH_HISTORY_SMALL=100 \\
    BENCH_SOAK_SECONDS=5 BENCH_LATENCY_TASKS=40 BENCH_LIST_ROUNDS=5 \\
    .venv/bin/python -m pytest -p no:cacheprovider -s tests/bench/test_bench_storage.py
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psutil
import pytest
import redis
import requests

from provisioning_common.events import EVENTS_CHANNEL
from provisioning_common.mongo import open_client
from provisioning_common.redis_client import open_redis
from tests.bench.history import seed_history
from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    login,
    orchestrator_env,
    start_control_center,
)
from tests.support.orchestrator import start_orchestrator
from tests.support.processes import LOG_DIR, ServiceProcess
from tests.support.stack import ROOT, devstack


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


CONCURRENCY = _env_int("BENCH_CONCURRENCY", 8)  # engine slots = Celery prefork children
CLIENTS = _env_int("BENCH_CLIENTS", 8)
N_TASKS = _env_int("BENCH_TASKS", 300)
HISTORY = _env_int("BENCH_HISTORY", 20000)
HISTORY_SMALL = min(HISTORY, _env_int("BENCH_HISTORY_SMALL", 1000))
HISTORY_OUTPUT_LINES = _env_int("BENCH_HISTORY_OUTPUT_LINES", 30)
LIST_ROUNDS = _env_int("BENCH_LIST_ROUNDS", 20)
LATENCY_TASKS = _env_int("BENCH_LATENCY_TASKS", 200)
SOAK_SECONDS = _env_int("BENCH_SOAK_SECONDS", 60)
SOAK_CLIENTS = _env_int("BENCH_SOAK_CLIENTS", 16)
CELERY_REDIS_DB = _env_int("BENCH_CELERY_REDIS_DB", 13)
ROUNDS = max(1, _env_int("BENCH_ROUNDS", 3))
# Waiting for tasks to end gives up when none of them ended for this long.
STALL_SECONDS = _env_int("BENCH_STALL_SECONDS", 180)

# The orchestrator as deployed (engine timings at their defaults), rate limits off.
ORCH_ENV = {
    "PROVISIONING_CLI": "/bin/true",
    "ENGINE_CONCURRENCY": str(CONCURRENCY),
    "ENGINE_POLL_SECONDS": "0.5",
    "ENGINE_LEASE_SECONDS": "15",
    "ENGINE_HEARTBEAT_SECONDS": "5",
    "RATE_LIMIT_ENABLED": "false",
    "LOG_LEVEL": "WARNING",
}
FINAL = ("completed", "failed", "cancelled")
BUSY = re.compile(rb"SQLITE_BUSY|database is locked", re.IGNORECASE)


# ------------------------------------------------------------------- helpers
def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _say(text: str) -> None:
    print(f"[bench-storage load {os.getloadavg()[0]:.1f}] {text}", flush=True)


class Finals:
    """Final statuses from the ``TaskStatusChanged`` events on Redis, with the
    (``perf_counter``) instant each arrived."""

    def __init__(self, redis_url: str) -> None:
        self._client = redis.Redis.from_url(redis_url)
        self._pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
        self._pubsub.subscribe(EVENTS_CHANNEL)
        deadline = time.monotonic() + 10
        while True:  # subscribed before anything is submitted
            msg = self._pubsub.get_message(timeout=1.0)
            if msg is not None and msg.get("type") == "subscribe":
                break
            if time.monotonic() > deadline:
                raise RuntimeError("could not subscribe to the events channel")
        self.final: dict[str, tuple[str, float]] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            except redis.RedisError:  # reconnects (and resubscribes) on the next call
                self._stop.wait(0.5)
                continue
            if msg is None or msg.get("type") != "message":
                continue
            at = time.perf_counter()
            try:
                event = json.loads(msg["data"])
            except ValueError:
                continue
            if not isinstance(event, dict) or event.get("event_type") != "TaskStatusChanged":
                continue
            data = event.get("data") or {}
            if data.get("status") in FINAL:
                with self._cond:
                    self.final.setdefault(str(data.get("task_id")), (str(data["status"]), at))
                    self._cond.notify_all()

    def wait(
        self, ids: Iterable[str], timeout: float, stall: float | None = None
    ) -> dict[str, tuple[str, float]]:
        """Until every id is final, ``timeout`` passed, or (``stall``) none of them
        ended for that long."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        done, progress = -1, time.monotonic()
        with self._cond:
            while missing := len(wanted - self.final.keys()):
                now = time.monotonic()
                if missing != done:
                    done, progress = missing, now
                left = deadline - now
                if left <= 0 or (stall is not None and now - progress > stall):
                    break
                self._cond.wait(min(left, 1.0))
            return {i: self.final[i] for i in wanted if i in self.final}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()
        self._client.close()


def _await_all(
    url: str, headers: dict[str, str], finals: Finals, ids: list[str], timeout: float
) -> tuple[dict[str, str], float, int]:
    """Statuses of ``ids`` once final, the instant the last one ended, and how many
    had to be read from the API because their event never arrived. Waits at most
    ``timeout``, and gives up earlier when none of them ends for STALL_SECONDS; a task
    still not final is reported as its status (lower case), or "no answer" when the
    API did not answer (after 3 such the rest are not asked)."""
    seen = finals.wait(ids, timeout, stall=STALL_SECONDS)
    statuses = {i: s for i, (s, _) in seen.items()}
    last = max((at for _, at in seen.values()), default=time.perf_counter())
    polled = unanswered = 0
    missing = [i for i in ids if i not in seen]
    if missing:  # pub/sub is at-most-once: ask the API before calling a task stuck
        with requests.Session() as session:
            for task_id in missing:
                status = "no answer"
                if unanswered < 3:
                    try:
                        resp = session.get(f"{url}/tasks/{task_id}", headers=headers, timeout=30)
                        if resp.ok:
                            status = str(resp.json()["data"]["status"]).lower()
                    except requests.RequestException:
                        pass
                unanswered += status == "no answer"
                statuses[task_id] = status
                polled += status in FINAL
        found = Counter(statuses[i] for i in missing)
        _say(f"{len(missing)} tasks without a final event: {dict(found)}")
        last = time.perf_counter()
    return statuses, last, polled


def _post(session: requests.Session, url: str, headers: dict[str, str], infra: str) -> Any:
    return session.post(
        f"{url}/workflows/servers/create",
        headers=headers,
        json={"infra": infra, "settings": "c.k"},
        timeout=60,
    )


def _submit_share(url: str, headers: dict[str, str], k: int, n: int, tag: str) -> list[str]:
    """Client ``k`` of CLIENTS submits tasks k, k+CLIENTS, ... back to back."""
    ids = []
    with requests.Session() as session:
        for i in range(k, n, CLIENTS):
            resp = _post(session, url, headers, f"{tag}-{i}")
            assert resp.status_code == 200, resp.text
            ids.append(str(resp.json()["data"]))
    return ids


@dataclass
class Throughput:
    tasks_per_second: float
    submit_seconds: float
    polled: int


def ours_throughput(
    url: str, headers: dict[str, str], finals: Finals, n: int, tag: str
) -> Throughput:
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        shares = list(pool.map(lambda k: _submit_share(url, headers, k, n, tag), range(CLIENTS)))
    submit_took = time.perf_counter() - started
    ids = [i for share in shares for i in share]
    statuses, last, polled = _await_all(url, headers, finals, ids, timeout=1800)
    counts = Counter(statuses.get(i, "not final") for i in ids)
    assert counts == Counter({"completed": n}), f"{tag}: {dict(counts)}"
    return Throughput(n / (last - started), submit_took, polled)


async def raw_spawns_per_second(n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            proc = await asyncio.create_subprocess_exec(
                "/bin/true",
                "servers",
                "create",
                "--infra",
                f"raw-{i}",
                "--settings",
                "c.k",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            await proc.communicate()

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - started)


# -------------------------------------------------------------------- Celery
def _redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


class CeleryBaseline:
    """A prefork worker (CONCURRENCY children) on Redis database CELERY_REDIS_DB of the
    bench's Redis, results through the Redis result backend. :meth:`throughput`: CLIENTS
    threads (one Celery app each) send their share of ``n`` tasks, then wait for their
    results; timed from the first send to the last result."""

    def __init__(self, redis_url: str, bench_app: Any, version: str) -> None:
        self.url = _redis_db(redis_url, CELERY_REDIS_DB)
        self.app_module = bench_app
        self.version = version
        with redis.Redis.from_url(self.url) as client:
            client.flushdb()
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"celery-worker-{os.getpid()}.log"
        argv = [sys.executable, "-m", "celery", "-A", "tests.bench.celery_app", "worker"]
        argv += ["--pool", "prefork", "--concurrency", str(CONCURRENCY), "--loglevel", "WARNING"]
        with self.log_path.open("ab") as logf:
            self.worker = subprocess.Popen(
                [*argv, "-n", f"bench-{uuid.uuid4().hex[:6]}@%h"],
                env={**os.environ, "BENCH_CELERY_URL": self.url},
                cwd=ROOT,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _client(self, prefix: str, k: int, total: int) -> float:
        app = self.app_module.make_app(self.url)
        try:
            sent = [
                app.send_task(self.app_module.TASK_NAME, args=[f"{prefix}-{i}"])
                for i in range(k, total, CLIENTS)
            ]
            for result in sent:
                assert result.get(timeout=600)["exit_code"] == 0
            return time.perf_counter()
        finally:
            app.close()

    def throughput(self, n: int, prefix: str = "celery") -> float:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                started = time.perf_counter()
                with ThreadPoolExecutor(CLIENTS) as pool:
                    ends = list(pool.map(lambda k: self._client(prefix, k, n), range(CLIENTS)))
        except Exception as exc:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise AssertionError(f"Celery baseline failed: {exc!r}\n{tail}") from exc
        return n / (max(ends) - started)

    def stop(self) -> None:
        devstack.stop_process(self.worker, grace=20)


@contextlib.contextmanager
def celery_baseline(redis_url: str) -> Iterator[CeleryBaseline | None]:
    """The started baseline (warmed up: its children forked and connected), or None
    with a printed message when Celery cannot be imported."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            celery = importlib.import_module("celery")
            bench_app = importlib.import_module("tests.bench.celery_app")
    except ImportError as exc:
        _say(f"Celery baseline SKIPPED: cannot import celery ({exc}); `make bench` installs it")
        yield None
        return
    baseline = CeleryBaseline(redis_url, bench_app, str(celery.__version__))
    try:
        baseline.throughput(2 * CLIENTS, "warm")
        yield baseline
    finally:
        baseline.stop()


# ------------------------------------------------------------- measurements
def list_latency(
    url: str, headers: dict[str, str], params: dict[str, Any], rounds: int
) -> tuple[float, float, int]:
    """p50, p95 (seconds) and the X-Total-Count of ``GET /tasks`` with ``params``."""
    samples: list[float] = []
    total = 0
    with requests.Session() as session:
        for i in range(rounds + 1):
            started = time.perf_counter()
            resp = session.get(f"{url}/tasks", params=params, headers=headers, timeout=600)
            took = time.perf_counter() - started
            assert resp.status_code == 200, resp.text
            assert resp.json()["data"], f"{params}: empty page"
            total = int(resp.headers.get("X-Total-Count", "0"))
            if i:  # the first one warms up
                samples.append(took)
    return _pct(samples, 0.5), _pct(samples, 0.95), total


def submit_to_running(
    url: str, headers: dict[str, str], finals: Finals, n: int, tag: str
) -> list[float]:
    """CLIENTS closed-loop clients; seconds from each submission to its ``started_at``."""
    records: list[tuple[str, float]] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        with requests.Session() as session:
            for i in range(k, n, CLIENTS):
                at = time.time()
                resp = _post(session, url, headers, f"{tag}-{i}")
                assert resp.status_code == 200, resp.text
                task_id = str(resp.json()["data"])
                assert finals.wait([task_id], 120), f"task {task_id} did not end"
                with lock:
                    records.append((task_id, at))

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    latencies = []
    with requests.Session() as session:
        for task_id, at in records:
            doc = session.get(f"{url}/tasks/{task_id}", headers=headers, timeout=30).json()["data"]
            latencies.append(_ts(doc["started_at"]) - at)
    return latencies


@dataclass
class Soak:
    classes: Counter[str] = field(default_factory=Counter)
    post_seconds: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    final: Counter[str] = field(default_factory=Counter)
    drain_seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.classes.values())


def soak(url: str, headers: dict[str, str], finals: Finals, seconds: float) -> Soak:
    result = Soak()
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(k: int) -> None:
        classes: Counter[str] = Counter()
        took: list[float] = []
        ids: list[str] = []
        with requests.Session() as session:
            i = 0
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    resp = _post(session, url, headers, f"soak-{k}-{i}")
                except requests.RequestException:
                    classes["error"] += 1
                    continue
                finally:
                    i += 1
                took.append(time.perf_counter() - started)
                classes[f"{resp.status_code // 100}xx"] += 1
                if resp.status_code == 200:
                    ids.append(str(resp.json()["data"]))
        with lock:
            result.classes.update(classes)
            result.post_seconds.extend(took)
            result.ids.extend(ids)

    started = time.perf_counter()
    with ThreadPoolExecutor(SOAK_CLIENTS) as pool:
        list(pool.map(client, range(SOAK_CLIENTS)))
    result.seconds = time.perf_counter() - started
    statuses, last, _ = _await_all(url, headers, finals, result.ids, timeout=1800)
    result.final = Counter(statuses.get(i, "not final") for i in result.ids)
    result.drain_seconds = max(0.0, last - started - result.seconds)
    return result


class RssSampler:
    """The process's resident set size every half second: last and peak (bytes)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.last = int(self.process.memory_info().rss)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def sample(self) -> int:
        with contextlib.suppress(psutil.Error):
            self.last = int(self.process.memory_info().rss)
            self.peak = max(self.peak, self.last)
        return self.last

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# A process whose name ends with this is counted with its live descendants
# (the Celery worker's prefork children).
TREE = " (all processes)"


def _cpu_seconds(pids: dict[str, int | None]) -> dict[str, float]:
    """CPU seconds used so far (user + system, reaped children included) by each process."""
    out: dict[str, float] = {}
    for name, pid in pids.items():
        if pid is None:
            continue
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            t = proc.cpu_times()
            out[name] = t.user + t.system + t.children_user + t.children_system
            if name.endswith(TREE):
                for child in proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        c = child.cpu_times()
                        out[name] += c.user + c.system + c.children_user + c.children_system
    return out


def _busy_lines(path: Path | None, offset: int = 0) -> int | None:
    if path is None or not path.exists():
        return None
    with path.open("rb") as f:
        f.seek(offset)
        return sum(1 for line in f if BUSY.search(line))


def _error_lines(path: Path | None) -> int:
    if path is None or not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for line in f if b"ERROR" in line or b"Traceback" in line)


@contextlib.contextmanager
def _orchestrator(stack_env: dict[str, str], cc_url: str, tag: str) -> Iterator[ServiceProcess]:
    proc = start_orchestrator(
        stack_env,
        **orchestrator_env(cc_url),
        **ORCH_ENV,
        MONGODB_DATABASE=f"bench_{tag}_{uuid.uuid4().hex[:8]}",
    )
    try:
        yield proc
    finally:
        proc.stop()


def _seed(stack_env: dict[str, str], database: str, n: int) -> dict[str, int]:
    async def run() -> dict[str, int]:
        client = open_client(
            stack_env["MONGODB_URL"], timeout_ms=120000, operation_timeout_ms=300_000
        )
        redis_client = open_redis(stack_env["REDIS_URL"], timeout=60)
        try:
            return await seed_history(
                client[database], redis_client, n, output_lines=HISTORY_OUTPUT_LINES
            )
        finally:
            await redis_client.aclose()
            await client.close()

    return asyncio.run(run())


def _warm_up(url: str, headers: dict[str, str], finals: Finals) -> None:
    ours_throughput(url, headers, finals, 2 * CLIENTS, f"warm-{uuid.uuid4().hex[:4]}")


# --------------------------------------------------------------------- report
Row = tuple[str, str, str, str]


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "NOT met")


def _table(rows: list[Row]) -> str:
    head: Row = ("figure", "value", "goal", "met")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    rule = "-" * (sum(widths) + 6)
    title = "  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)).rstrip()
    return "\n".join([title, rule, *lines])


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# ----------------------------------------------------------------------- test
@pytest.fixture
def bench_cc(stack: Any) -> Iterator[ServiceProcess]:
    cc = start_control_center(stack.env(), RATE_LIMIT_ENABLED="false")
    try:
        yield cc
    finally:
        cc.stop()


Pids = dict[str, int | None]
_T = TypeVar("_T")


def _measured_cpu(pids: Pids, into: dict[str, float], run: Callable[[], _T]) -> _T:
    """``run()``, adding the CPU seconds each process used meanwhile to ``into``."""
    before = _cpu_seconds(pids)
    result = run()
    for name, used in _cpu_seconds(pids).items():
        if name in before:
            into[name] = into.get(name, 0.0) + used - before[name]
    return result


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_bench_storage(stack: Any, bench_cc: ServiceProcess) -> None:
    stack_env: dict[str, str] = stack.env()
    mongo_log = Path(stack.workdir) / "mongo.log" if stack.mongo_kind != "given" else None
    mongo_log_offset = mongo_log.stat().st_size if mongo_log and mongo_log.exists() else 0
    load_before = os.getloadavg()
    _say(
        f"concurrency {CONCURRENCY}, {CLIENTS} clients, {N_TASKS} tasks x {ROUNDS} rounds, "
        f"history {HISTORY_SMALL}/{HISTORY}, soak {SOAK_CLIENTS} clients {SOAK_SECONDS}s"
    )

    def headers() -> dict[str, str]:  # a fresh token per phase: none expires mid-bench
        token = login(bench_cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"]
        return {"Authorization": f"Bearer {token}"}

    assert bench_cc.proc is not None
    shared: Pids = {
        "FerretDB/mongod": stack.mongo_process.pid if stack.mongo_process else None,
        "redis": next(
            (p.pid for p in stack.processes if "redis" in Path(str(p.args[0])).name), None
        ),
        "control center": bench_cc.proc.pid,
        "bench clients": os.getpid(),
    }
    tps: dict[str, list[float]] = {"raw": [], "celery": [], "fresh": [], "history": []}
    cpu: dict[str, dict[str, float]] = {"celery": {}, "fresh": {}, "history": {}}
    polled = 0
    lists: dict[tuple[str, int], tuple[float, float, int]] = {}
    queries: dict[str, dict[str, Any]] = {
        "all": {"limit": 50},
        "Failed": {"status": "Failed", "limit": 50},
    }
    finals = Finals(stack_env["REDIS_URL"])
    try:
        with _orchestrator(stack_env, bench_cc.url, "history") as hist_orch:
            assert hist_orch.proc is not None
            rss = RssSampler(hist_orch.proc.pid)
            database = hist_orch.env["MONGODB_DATABASE"]
            auth = headers()
            with contextlib.ExitStack() as others:
                celery = others.enter_context(celery_baseline(stack_env["REDIS_URL"]))
                fresh_orch = others.enter_context(_orchestrator(stack_env, bench_cc.url, "fresh"))
                assert fresh_orch.proc is not None
                # 3. listing at HISTORY_SMALL, then at HISTORY retained tasks
                for size, more in (
                    (HISTORY_SMALL, HISTORY_SMALL),
                    (HISTORY, HISTORY - HISTORY_SMALL),
                ):
                    seeded = _seed(stack_env, database, more)
                    _say(f"seeded {more} finished tasks (now {size}): {seeded}")
                    for name, params in queries.items():
                        lists[name, size] = list_latency(hist_orch.url, auth, params, LIST_ROUNDS)
                        p50, p95, total = lists[name, size]
                        _say(f"GET /tasks {params} at {size}: p50 {_ms(p50)} p95 {_ms(p95)}")
                        assert total >= (size if name == "all" else size // 10)
                # 1-2. throughput, the systems in turn, ROUNDS times (the machine's load drifts)
                _warm_up(fresh_orch.url, auth, finals)
                _warm_up(hist_orch.url, auth, finals)
                for r in range(1, ROUNDS + 1):
                    tps["raw"].append(asyncio.run(raw_spawns_per_second(N_TASKS, CONCURRENCY)))
                    if celery is not None:
                        worker: Pids = {
                            f"Celery worker{TREE}": celery.worker.pid,
                            "redis": shared["redis"],
                            "bench clients": shared["bench clients"],
                        }
                        tps["celery"].append(
                            _measured_cpu(
                                worker, cpu["celery"], functools.partial(celery.throughput, N_TASKS)
                            )
                        )
                    for side, orch in (("fresh", fresh_orch), ("history", hist_orch)):
                        assert orch.proc is not None
                        result = _measured_cpu(
                            {"orchestrator": orch.proc.pid, **shared},
                            cpu[side],
                            functools.partial(
                                ours_throughput, orch.url, auth, finals, N_TASKS, f"{side}-{r}"
                            ),
                        )
                        tps[side].append(result.tasks_per_second)
                        polled += result.polled
                    _say(
                        f"round {r}: "
                        + ", ".join(f"{k} {v[-1]:.1f}/s" for k, v in tps.items() if v)
                    )
                # 5. submit -> Running, closed loop
                fresh_lat = submit_to_running(fresh_orch.url, auth, finals, LATENCY_TASKS, "lat-f")
                hist_lat = submit_to_running(hist_orch.url, auth, finals, LATENCY_TASKS, "lat-h")
                _say(
                    f"submit->Running p99: fresh {_ms(_pct(fresh_lat, 0.99))}, "
                    f"history {_ms(_pct(hist_lat, 0.99))}"
                )
                rss_history = max(rss.peak, rss.sample())
                fresh_log = fresh_orch.log_path
            # 4. soak, the history orchestrator alone
            auth = headers()
            soaked = soak(hist_orch.url, auth, finals, SOAK_SECONDS)
            _say(
                f"soak: {soaked.requests} requests {dict(soaked.classes)}, "
                f"final {dict(soaked.final)}, drained {soaked.drain_seconds:.1f}s after"
            )
            rss.stop()
            history_log = hist_orch.log_path
    finally:
        finals.close()

    busy_orch = sum(_busy_lines(p) or 0 for p in (fresh_log, history_log))
    busy_mongo = _busy_lines(mongo_log, mongo_log_offset)
    errors = _error_lines(fresh_log) + _error_lines(history_log)
    mb = 1024 * 1024
    k = f"{HISTORY // 1000}k" if HISTORY >= 1000 else str(HISTORY)
    k_small = f"{HISTORY_SMALL // 1000}k" if HISTORY_SMALL >= 1000 else str(HISTORY_SMALL)
    best = {name: max(values) if values else None for name, values in tps.items()}
    ours, raw, hist = best["fresh"], best["raw"], best["history"]
    assert ours is not None
    assert raw is not None
    assert hist is not None
    vs_celery = ours / best["celery"] if best["celery"] else None
    ratio_hist = hist / ours
    p99 = _pct(hist_lat, 0.99)
    five = soaked.classes.get("5xx", 0)
    lost = soaked.classes.get("error", 0)
    celery_label = f"Celery {celery.version}" if celery is not None else "Celery"
    rows: list[Row] = [
        ("1  ours, no-op tasks/s end to end (fresh)", f"{ours:.1f}", "", ""),
        ("   raw create_subprocess_exec spawns/s", f"{raw:.1f}", "", ""),
        (
            f"   {celery_label} (Redis broker+backend, prefork) tasks/s",
            f"{best['celery']:.1f}" if best["celery"] else "skipped: not importable",
            "",
            "",
        ),
        ("   ours / raw", f"{ours / raw:.3f}", "", ""),
        (
            "   ours / Celery",
            f"{vs_celery:.2f}" if vs_celery is not None else "n/a",
            ">= 0.5",
            _verdict(None if vs_celery is None else vs_celery >= 0.5),
        ),
        (f"2  ours, tasks/s with {k} history", f"{hist:.1f}", "", ""),
        ("   history / fresh", f"{ratio_hist:.2f}", ">= 0.9", _verdict(ratio_hist >= 0.9)),
    ]
    for name, label in (("all", "GET /tasks?limit=50"), ("Failed", "  ...&status=Failed")):
        for size, tag in ((HISTORY_SMALL, k_small), (HISTORY, k)):
            p50, p95, _ = lists[name, size]
            goal = size == HISTORY
            rows.append(
                (
                    f"3  {label} p50 / p95 at {tag}",
                    f"{_ms(p50)} / {_ms(p95)}",
                    "p50 <= 500 ms" if goal else "",
                    _verdict(p50 <= 0.5) if goal else "",
                )
            )
    rows += [
        (
            f"4  soak {SOAK_CLIENTS} clients {SOAK_SECONDS}s: 5xx / no response (60 s)",
            f"{five} / {lost} of {soaked.requests} ({soaked.requests / soaked.seconds:.0f} req/s)",
            "0 / 0",
            _verdict(five == 0 and lost == 0),
        ),
        (
            "   soak responses by class; its tasks by status",
            " ".join(f"{c} {n}" for c, n in sorted(soaked.classes.items()))
            + "; "
            + " ".join(f"{c} {n}" for c, n in sorted(soaked.final.items())),
            "",
            "",
        ),
        (
            "   soak POST latency p50 / p99",
            f"{_ms(_pct(soaked.post_seconds, 0.5))} / {_ms(_pct(soaked.post_seconds, 0.99))}",
            "",
            "",
        ),
        (
            "   SQLITE_BUSY / 'database is locked' lines",
            f"orch {busy_orch}, ferretdb {'n/a' if busy_mongo is None else busy_mongo}",
            "0",
            _verdict(busy_orch == 0 and not busy_mongo),
        ),
        (
            f"5  submit->Running p50 / p99 ({CLIENTS} closed-loop clients, {k} history)",
            f"{_ms(_pct(hist_lat, 0.5))} / {_ms(p99)}",
            "p99 <= 100 ms",
            _verdict(p99 <= 0.1),
        ),
        (
            "   submit->Running p50 / p99 (fresh)",
            f"{_ms(_pct(fresh_lat, 0.5))} / {_ms(_pct(fresh_lat, 0.99))}",
            "",
            "",
        ),
        (
            f"   orchestrator RSS peak with {k} history (before soak)",
            f"{rss_history / mb:.0f} MB",
            "< 250 MB",
            _verdict(rss_history < 250 * mb),
        ),
        ("   orchestrator RSS peak incl. soak", f"{rss.peak / mb:.0f} MB", "", ""),
    ]
    load_after = os.getloadavg()
    runs = N_TASKS * ROUNDS
    print(
        f"\n=== storage bench (issue 11): concurrency {CONCURRENCY}, {CLIENTS} clients, "
        f"{N_TASKS} no-op tasks, best of {ROUNDS} rounds, history {HISTORY} ===\n"
        f"{_table(rows)}\n"
        f"rounds (tasks/s): "
        + "; ".join(f"{n} " + " ".join(f"{v:.1f}" for v in vals) for n, vals in tps.items())
        + "\nCPU ms per task (all rounds): "
        + "; ".join(
            f"{side}: " + ", ".join(f"{p} {1000 * t / runs:.1f}" for p, t in used.items())
            for side, used in cpu.items()
            if used
        )
        + f"\n(measured {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}, {os.cpu_count()} CPUs, load "
        f"average {load_before[0]:.2f} before / {load_after[0]:.2f} after; ERROR/Traceback "
        f"lines in the orchestrator logs: {errors}; task ends read from the API for a missed "
        f"event: {polled})",
        flush=True,
    )
    unfinished = {status: n for status, n in soaked.final.items() if status not in FINAL}
    assert not unfinished, f"soak tasks not final {STALL_SECONDS}s after the last one ended"
