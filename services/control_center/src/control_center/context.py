"""What the handlers of every slice share: settings, repositories, the key ring and
the storage clients, built once per application in ``app.py``'s cleanup context."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from redis.asyncio import Redis

from provisioning_common.events import EventBus

from .audit.repository import AuditRepository
from .auth.repository import (
    LoginRepository,
    SecretRepository,
    SessionRepository,
    TokenRepository,
    UseRepository,
)
from .keys.repository import KeyRepository
from .keys.service import KeyRing
from .policies.repository import PolicyRepository
from .settings import Settings
from .users.repository import UserRepository


@dataclass
class Repos:
    users: UserRepository
    sessions: SessionRepository
    tokens: TokenRepository
    uses: UseRepository
    logins: LoginRepository
    secrets: SecretRepository
    policies: PolicyRepository
    audit: AuditRepository
    keys: KeyRepository


@dataclass
class Context:
    settings: Settings
    repos: Repos
    keyring: KeyRing
    redis: Redis
    bus: EventBus
    dummy_hash: bytes  # bcrypt hash at the configured cost, checked for unknown users
    mfa_key: bytes  # Fernet key that encrypts TOTP secrets at rest


CONTEXT = web.AppKey("control_center_context", Context)


def get_context(request: web.Request) -> Context:
    return request.app[CONTEXT]
