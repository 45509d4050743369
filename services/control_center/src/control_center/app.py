"""Application factory: ``create_app(settings)``; nothing happens at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

from aiohttp import web
from cryptography.fernet import Fernet

from provisioning_common.openapi import add_openapi_routes
from provisioning_common.timeutil import utcnow
from provisioning_common.webapp import (
    DATABASE,
    EVENT_BUS,
    REDIS,
    add_operational_routes,
    check_mongo,
    check_redis,
    create_base_app,
    enable_cors,
)

from .audit.repository import AuditRepository
from .audit.routes import routes as audit_routes
from .auth.passwords import dummy_hash
from .auth.repository import (
    LoginRepository,
    SecretRepository,
    SessionRepository,
    TokenRepository,
    UseRepository,
)
from .auth.routes import routes as auth_routes
from .context import CONTEXT, Context, Repos
from .keys.repository import KeyRepository
from .keys.routes import routes as key_routes
from .keys.service import KeyRing
from .policies import service as policy_service
from .policies.repository import PolicyRepository
from .policies.routes import routes as policy_routes
from .settings import Settings
from .users import service as user_service
from .users.repository import UserRepository
from .users.routes import routes as user_routes

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
PURGE_INTERVAL = 300.0


def create_app(settings: Settings) -> web.Application:
    app = create_base_app(settings.common)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(control_center_ctx)  # after the base storage context
    app.on_response_prepare.append(_no_store)
    add_operational_routes(
        app,
        health_message="Control center is healthy",
        checks={"storage": check_mongo, "redis": check_redis},
    )
    for table in (auth_routes, user_routes, policy_routes, audit_routes, key_routes):
        app.router.add_routes(table)
    add_openapi_routes(app, "Provisioning control center", "1.0.0")
    enable_cors(app, settings.common.cors_origins)  # last: covers every route
    return app


async def _no_store(request: web.Request, response: web.StreamResponse) -> None:
    """Tokens, TOTP secrets and user data must not sit in a shared or browser cache
    (RFC 6749 §5.1); a handler that allows caching (the JWKS) says so itself."""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Pragma", "no-cache")


async def control_center_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    db = app[DATABASE]
    repos = Repos(
        users=UserRepository(db),
        sessions=SessionRepository(db),
        tokens=TokenRepository(db),
        uses=UseRepository(db),
        logins=LoginRepository(db),
        secrets=SecretRepository(db),
        policies=PolicyRepository(db),
        audit=AuditRepository(db),
        keys=KeyRepository(db),
    )
    for repo in (
        repos.users,
        repos.sessions,
        repos.tokens,
        repos.uses,
        repos.logins,
        repos.policies,
        repos.audit,
        repos.keys,
    ):
        await repo.ensure_indexes()
    auth = settings.auth
    keyring = KeyRing(retention_seconds=max(auth.session_max, auth.service_ttl) + 300)
    if settings.auth.private_key_pem:
        keyring.load_from_config(settings.auth.private_key_pem, settings.auth.previous_key_pems)
    else:
        await keyring.load_from_store(repos.keys)
    mfa_key = settings.auth.mfa_encryption_key or await repos.secrets.get_or_create(
        "mfa-encryption-key", Fernet.generate_key().decode("ascii")
    )
    ctx = Context(
        settings=settings,
        repos=repos,
        keyring=keyring,
        redis=app[REDIS],
        bus=app[EVENT_BUS],
        dummy_hash=await asyncio.to_thread(dummy_hash, settings.auth.bcrypt_rounds),
        mfa_key=mfa_key.encode("ascii"),
    )
    Fernet(ctx.mfa_key)  # a bad MFA_ENCRYPTION_KEY stops start-up, not the first login
    app[CONTEXT] = ctx
    await policy_service.seed_defaults(ctx)
    await user_service.bootstrap_admin(ctx)
    if settings.auth.bootstrap_admin_unlock:
        await user_service.break_glass_unlock(
            repos.users, repos.logins, repos.audit, "BOOTSTRAP_ADMIN_UNLOCK"
        )
    tasks = [
        asyncio.create_task(
            _every(
                settings.auth.key_refresh_seconds, lambda: keyring.reload(repos.keys), "key reload"
            )
        ),
        asyncio.create_task(_every(PURGE_INTERVAL, lambda: _purge(ctx), "purge")),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _every(interval: float, job: Callable[[], Awaitable[None]], name: str) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except Exception as exc:  # keep the loop alive; the next round retries
            log.warning("%s failed: %s", name, type(exc).__name__)


async def _purge(ctx: Context) -> None:
    """Collections that would grow forever without TTL indexes (DESIGN §3)."""
    now = int(time.time())
    await ctx.repos.tokens.purge_expired(now)
    await ctx.repos.uses.purge_expired(now)
    moment = utcnow()
    known_days = ctx.settings.auth.known_address_days
    await ctx.repos.logins.purge(moment, moment - timedelta(days=max(known_days, 1)))
