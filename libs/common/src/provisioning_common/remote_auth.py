"""Verifying callers against the control center (DESIGN §4, docs/interfaces.md).

- :class:`JwksCache`: the control center's public keys, refreshed on an unknown ``kid``
  (single flight, at most once per interval).
- :class:`ServiceTokenClient`: this service's own token from ``POST /auth/token``.
- :class:`Introspector`: ``POST /auth/introspect`` with a positive answer cached for at
  most ``ttl`` seconds, dropped at once on a revocation event.
- :class:`PolicyCache`: the whole policy set from ``GET /policies`` (every page, all or
  nothing), reloaded on ``policies.changed`` (and periodically as a backstop).
- :class:`RemoteAuth`: the facade a service uses: ``authenticate(token)`` → :class:`Principal`,
  ``decide(principal, action, resource, request)`` → policy ``Decision``,
  ``listen()`` (run as a background task) for the Redis channels.

Errors raised are the shared :mod:`provisioning_common.errors` ones: 401 for a bad,
expired or revoked token, 503 when the control center cannot be reached and no valid
cache entry exists."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from redis.asyncio import Redis

from .errors import ServiceUnavailable, Unauthorized
from .events import POLICIES_CHANNEL, REVOCATIONS_CHANNEL, EventBus
from .logging import request_id_var
from .policy import Decision, PolicyEngine, policy_from_document
from .tokens import TokenClaims, TokenError, decode_token, unverified_kid

log = logging.getLogger(__name__)

_CC_ERRORS = (aiohttp.ClientError, TimeoutError, ValueError)


class ControlCenterUnavailable(ServiceUnavailable):
    default_message = "Control center unavailable, try again later"


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    username: str
    roles: tuple[str, ...]
    jti: str
    iat: int
    exp: int
    typ: str

    @property
    def user_context(self) -> dict[str, Any]:
        return {"id": self.sub, "username": self.username, "roles": list(self.roles)}


class _ControlCenter:
    """Shared HTTP plumbing: bounded timeouts, enveloped JSON."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout: float) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def request(
        self, method: str, path: str, *, token: str | None = None, json: Any = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request_id = request_id_var.get()
        if request_id:  # one request id across both services' logs
            headers["X-Request-ID"] = request_id
        async with self.session.request(
            method, self.base_url + path, json=json, headers=headers, timeout=self.timeout
        ) as resp:
            body = await resp.json(content_type=None)
            return resp.status, body


class JwksCache:
    """Public keys by ``kid``. An unknown ``kid`` triggers a refetch (key rotation),
    single flight and at most one per ``min_refresh_interval``: concurrent requests
    share the fetch in flight, and a ``kid`` still unknown after the last fetch within
    the interval is refused at once (401). Forged kids can neither hammer the control
    center nor queue requests behind a lock."""

    def __init__(self, cc: _ControlCenter, *, min_refresh_interval: float = 2.0) -> None:
        self.cc = cc
        self.keys: dict[str, Any] = {}
        self.min_refresh_interval = min_refresh_interval
        self._last_refresh = -1e9
        self._inflight: asyncio.Future[None] | None = None

    async def refresh(self, wanted_kid: str | None = None) -> None:
        """Fetch the key set unless a fetch is in flight (then wait for that one) or
        one started less than ``min_refresh_interval`` ago (then return at once)."""
        if wanted_kid is not None and wanted_kid in self.keys:
            return
        if self._inflight is None:
            if time.monotonic() - self._last_refresh < self.min_refresh_interval:
                return
            self._last_refresh = time.monotonic()
            self._inflight = asyncio.ensure_future(self._fetch())
            self._inflight.add_done_callback(self._done)
        # Shielded: one caller giving up (client gone) does not cancel the others' fetch.
        await asyncio.shield(self._inflight)

    def _done(self, fut: asyncio.Future[None]) -> None:
        self._inflight = None
        if not fut.cancelled():
            fut.exception()  # retrieved here: every waiter also sees it

    async def _fetch(self) -> None:
        status, body = await self.cc.request("GET", "/.well-known/jwks.json")
        if status != 200 or not isinstance(body, dict):
            raise ValueError(f"JWKS answered {status}")
        self.keys = {
            k["kid"]: k
            for k in body.get("keys", [])
            if isinstance(k, dict) and isinstance(k.get("kid"), str) and k.get("kty") == "RSA"
        }

    async def decode(self, token: str, *, issuer: str, audience: str, typ: str) -> TokenClaims:
        kid = unverified_kid(token)
        if kid not in self.keys:
            await self._refresh_or_503(kid)  # first use, or a rotated key
            if not self.keys:
                raise ControlCenterUnavailable()
        return decode_token(token, self.keys, issuer=issuer, audience=audience, expected_typ=typ)

    async def _refresh_or_503(self, kid: str) -> None:
        try:
            await self.refresh(kid)
        except _CC_ERRORS as exc:
            if not self.keys:
                raise ControlCenterUnavailable() from exc
            log.warning("JWKS refresh failed: %s", type(exc).__name__)


class ServiceTokenClient:
    """Client-credentials token for calling the control center; renewed before expiry."""

    def __init__(self, cc: _ControlCenter, client_id: str, client_secret: str) -> None:
        self.cc = cc
        self.client_id = client_id
        self.client_secret = client_secret
        self._token: str | None = None
        self._valid_until = 0.0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._token = None

    async def get(self) -> str:
        async with self._lock:
            if self._token and time.monotonic() < self._valid_until:
                return self._token
            status, body = await self.cc.request(
                "POST",
                "/auth/token",
                json={
                    "grant_type": "client_credentials",
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                },
            )
            if status != 200 or not isinstance(body, dict) or not body.get("success"):
                raise ValueError(f"service token request answered {status}")
            data = body["data"]
            lifetime = float(data.get("expires_in", 300))
            self._token = str(data["access_token"])
            # Renew well before expiry so a token never dies in flight.
            self._valid_until = time.monotonic() + max(5.0, lifetime * 0.8)
            return self._token

    async def call(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        """Call with the service token, renewing it once on a 401."""
        for attempt in range(2):
            token = await self.get()
            status, body = await self.cc.request(method, path, token=token, json=json)
            if status == 401 and attempt == 0:
                self.invalidate()
                continue
            return status, body
        return status, body


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
        except _CC_ERRORS as exc:
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


class PolicyCache:
    def __init__(
        self, service: ServiceTokenClient, *, max_age: float = 300.0, max_pages: int = 100
    ) -> None:
        self.service = service
        self.max_age = max_age
        self.engine: PolicyEngine | None = None
        self.page_size = 1000  # the control center's largest page
        self.max_pages = max_pages
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._loaded_at = 0.0

    async def reload(self) -> PolicyEngine:
        """Load every policy, page by page. All or nothing: a page that fails, or more
        than ``max_pages`` pages, keeps the previous set (or none: fail closed)."""
        async with self._lock:
            docs: list[Any] = []
            for page in range(self.max_pages + 1):
                status, body = await self.service.call(
                    "GET", f"/policies?limit={self.page_size}&offset={page * self.page_size}"
                )
                if (
                    status != 200
                    or not isinstance(body, dict)
                    or not isinstance(body.get("data"), list)
                ):
                    raise ValueError(f"policies answered {status}")
                docs.extend(body["data"])
                if len(body["data"]) < self.page_size:
                    break
            else:
                raise ValueError(
                    f"more than {self.max_pages * self.page_size} policies: refusing a partial set"
                )
            policies = []
            for doc in docs:
                try:
                    policies.append(policy_from_document(doc))
                except Exception as exc:  # one broken policy must not disable the rest
                    log.warning("skipping unreadable policy %s: %s", doc.get("id"), exc)
            self.engine = PolicyEngine(policies)
            self._loaded_at = time.monotonic()
            return self.engine

    async def get(self) -> PolicyEngine:
        if self.engine is not None and time.monotonic() - self._loaded_at < self.max_age:
            return self.engine
        try:
            return await self.reload()
        except _CC_ERRORS as exc:
            if self.engine is not None:  # stale but known: better than failing everyone
                log.warning("policy reload failed, keeping the cached set: %s", exc)
                return self.engine
            raise ControlCenterUnavailable() from exc


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


def revokes(payload: Mapping[str, Any], principal: Principal) -> bool:
    """Whether a revocation event covers ``principal``'s token (its ``jti``, or every
    token of its user issued before ``revoked_before``)."""
    if payload.get("jti") == principal.jti:
        return True
    if payload.get("sub") != principal.sub:
        return False
    before = payload.get("revoked_before")
    return not isinstance(before, int | float) or principal.iat < before


class RemoteAuth:
    def __init__(
        self, config: RemoteAuthConfig, session: aiohttp.ClientSession, redis: Redis | None = None
    ) -> None:
        self.config = config
        self.redis = redis
        cc = _ControlCenter(session, config.control_center_url, config.http_timeout)
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
