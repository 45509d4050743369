"""Application scaffolding both services share: typed AppKeys, the storage clients
(:class:`Storage`, opened and closed by each service's container), ``/health``,
readiness, ``/metrics``, rate-limit enforcement and the client address behind
trusted proxies."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp_cors
from aiohttp import web
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from .config import CommonSettings
from .envelope import ok
from .errors import ServiceUnavailable, TooManyRequests, Unauthorized
from .events import EventBus
from .metrics import RATE_LIMIT_REJECTIONS, metrics_handler
from .middleware import make_middlewares
from .mongo import Document, open_client, ping
from .ratelimit import RateDecision, RateLimiter
from .redis_client import open_redis

log = logging.getLogger(__name__)

COMMON_SETTINGS = web.AppKey("common_settings", CommonSettings)
MONGO_CLIENT = web.AppKey("mongo_client", AsyncMongoClient)
DATABASE = web.AppKey("database", AsyncDatabase)
REDIS = web.AppKey("redis", Redis)
EVENT_BUS = web.AppKey("event_bus", EventBus)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)

RATE_HEADERS = web.RequestKey("rate_limit_headers", dict[str, str])
ReadinessCheck = Callable[[web.Application], Awaitable[None]]


def create_base_app(settings: CommonSettings) -> web.Application:
    """The app both services start from. Its storage clients are opened by the
    service's container, which binds them with :func:`bind_storage` when it starts."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=make_middlewares(settings.service),
    )
    app[COMMON_SETTINGS] = settings
    app.on_response_prepare.append(_add_rate_headers)
    return app


class ContainerLifecycle:
    """Start and stop of a service's composition root (its ``Container``): ``_start``
    opens, builds and starts everything, registering each stop on the exit stack;
    a failed start stops what already started; ``stop`` unwinds newest first."""

    def __init__(self) -> None:
        self.started = False
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        """Open, build and start everything; on a failure, stop what already started."""
        try:
            await self._start(self._stack)
        except BaseException:
            await self._stack.aclose()
            raise
        self.started = True

    async def stop(self) -> None:
        """Stop everything ``start`` started, newest first."""
        self.started = False
        await self._stack.aclose()

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Storage:
    """The storage clients a service opens once: MongoDB (its database), Redis, the
    event bus and the rate limiter on that Redis."""

    client: AsyncMongoClient[Document]
    database: AsyncDatabase[Document]
    redis: Redis
    bus: EventBus
    rate_limiter: RateLimiter

    @classmethod
    def open(cls, settings: CommonSettings) -> Storage:
        client = open_client(settings.mongodb_url)
        redis = open_redis(settings.redis_url)
        return cls(client, client[settings.database], redis, EventBus(redis), RateLimiter(redis))

    async def aclose(self) -> None:
        """Redis first, then MongoDB."""
        try:
            await self.redis.aclose()
        finally:
            await self.client.close()


def bind_storage(app: web.Application, storage: Storage) -> None:
    """Make ``storage`` what the shared helpers (readiness checks, rate limits) use."""
    app[MONGO_CLIENT] = storage.client
    app[DATABASE] = storage.database
    app[REDIS] = storage.redis
    app[EVENT_BUS] = storage.bus
    app[RATE_LIMITER] = storage.rate_limiter


async def _add_rate_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = request.get(RATE_HEADERS)
    if headers:
        for name, value in headers.items():
            response.headers.setdefault(name, value)


# Tiers whose limit guards against credential guessing: without Redis they refuse.
FAIL_CLOSED_TIERS = frozenset({"auth"})


async def enforce_rate_limit(
    request: web.Request, tier: str, subject: str, limit: int
) -> RateDecision | None:
    """Count one request of ``subject`` in ``tier``; raise 429 when over the limit.

    The ``X-RateLimit-*`` headers are attached to whatever response follows."""
    settings = request.app[COMMON_SETTINGS]
    if not settings.rate_limits.enabled:
        return None
    limiter = request.app[RATE_LIMITER]
    try:
        decision = await limiter.hit(tier, subject, limit, settings.rate_limits.window_seconds)
    except Exception as exc:
        log.warning("rate limiter unavailable (%s), tier %s", type(exc).__name__, tier)
        if tier in FAIL_CLOSED_TIERS:
            raise ServiceUnavailable("Rate limiter unavailable, try again later") from exc
        # The other tiers protect capacity, not credentials: with Redis down, an
        # authenticated caller is served rather than refused (DESIGN: Redis holds
        # nothing that cannot be lost).
        return None
    request[RATE_HEADERS] = decision.headers()
    if not decision.allowed:
        RATE_LIMIT_REJECTIONS.labels(settings.service, tier).inc()
        raise TooManyRequests(decision.retry_after, headers=decision.headers())
    return decision


def client_ip(request: web.Request) -> str:
    """The caller's address; ``X-Forwarded-For`` is believed only when the direct
    peer is a configured trusted proxy (then the right-most untrusted hop wins)."""
    peer = request.remote or "unknown"
    trusted = request.app[COMMON_SETTINGS].trusted_proxies
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    forwarded = request.headers.get("X-Forwarded-For", "")
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _is_trusted(address: str, trusted: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in trusted:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


CORS_ALLOW_HEADERS = ("Authorization", "Content-Type", "Accept", "Idempotency-Key", "X-Request-ID")
CORS_EXPOSE_HEADERS = (
    "X-Request-ID",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Retry-After",
    "X-Total-Count",
    "X-Limit",
    "X-Offset",
    "Link",
)


def enable_cors(app: web.Application, origins: Sequence[str]) -> None:
    """Allow browsers from ``origins`` (``CORS_ORIGINS``) on every route; none by
    default. Call after every route is added. Credentials are bearer tokens in a
    header, never cookies, so ``allow_credentials`` stays off."""
    if not origins:
        return
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=False,
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        max_age=600,
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in origins})
    for route in list(app.router.routes()):
        if route.method != "OPTIONS":
            cors.add(route)


async def check_mongo(app: web.Application) -> None:
    await ping(app[DATABASE])


async def check_redis(app: web.Application) -> None:
    await app[REDIS].ping()


def add_operational_routes(
    app: web.Application,
    *,
    health_message: str,
    checks: Mapping[str, ReadinessCheck],
    check_timeout: float = 3.0,
) -> None:
    """``GET /health`` (liveness, no dependencies), ``GET /ready`` (every
    dependency really checked) and ``GET /metrics``."""

    async def health(request: web.Request) -> web.Response:
        return ok(health_message)

    async def ready(request: web.Request) -> web.Response:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                async with asyncio.timeout(check_timeout):
                    await check(request.app)
                results[name] = "Healthy"
            except Exception as exc:
                log.warning("readiness check %s failed: %s", name, type(exc).__name__)
                results[name] = "Unhealthy"
        failed = [name for name, state in results.items() if state != "Healthy"]
        if failed:
            raise ServiceUnavailable(
                f"Not ready: {', '.join(failed)} unavailable", details={"components": results}
            )
        return ok({"status": "Ready", "components": results})

    async def metrics(request: web.Request) -> web.StreamResponse:
        token = request.app[COMMON_SETTINGS].metrics_token
        if token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                raise Unauthorized()
        return await metrics_handler(request)

    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
