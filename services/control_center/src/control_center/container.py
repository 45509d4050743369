"""The control center's composition root: everything the app runs on, built once from
:class:`~control_center.settings.Settings`.

``create_app`` builds one :class:`Container` and starts it in the app's
``cleanup_ctx``; handlers reach it through ``request.app[CONTAINER]``
(``control_center.deps``) and call its services only. :meth:`Container.start` opens
the storage clients, builds the repositories (indexes created), loads the signing
keys and the MFA key, builds each slice's services once (each given only the
repositories it uses), seeds the default policies and the bootstrap admin, and
starts the background loops (key reload, purge); :meth:`Container.stop` stops them
in the reverse order. The attributes exist once ``start`` has run.

The services, in the order they are built (each uses only those before it):

- ``audit`` (:class:`AuditLog`): every audit record, and the ``/audit`` endpoints;
  its ``chain`` (:class:`AuditChain`) hash-chains each new record and signs the
  chain's head with the JWT signing key (every ``AUDIT_CHECKPOINT_RECORDS`` records,
  and every ``AUDIT_CHECKPOINT_SECONDS`` by a background loop);
- ``revocations``: tokens, sessions and users revoked (MongoDB, Redis, the event);
- ``verifier``: token signature, claims and state, introspection;
- ``lockouts``: the failure budgets of every password or TOTP check;
- ``mfa``: TOTP enrolment, activation and the login check;
- ``tokens``: sessions, refresh, logout, service tokens;
- ``login``: the login use case;
- ``users`` and ``bootstrap``: user management, the bootstrap admin;
- ``policies``: policy management, evaluation, default policies;
- ``keys``: the JWKS and rotation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from cryptography.fernet import Fernet

from provisioning_common.aio import background
from provisioning_common.timeutil import utcnow
from provisioning_common.webapp import ContainerLifecycle, Storage

from .audit.chain_service import AuditChain, ChainConfig, checkpoint_loop
from .audit.repository import AuditRepository, ChainRepository
from .audit.service import AuditLog
from .auth.lockout import Lockouts
from .auth.login import LoginService
from .auth.mfa import MfaService
from .auth.passwords import dummy_hash
from .auth.repository import (
    LoginRepository,
    SecretRepository,
    SessionRepository,
    TokenRepository,
    UseRepository,
)
from .auth.revocation import Revocations
from .auth.tokens import TokenService
from .auth.verification import TokenVerifier
from .keys.repository import KeyRepository
from .keys.service import KeyRing, KeyService
from .policies.repository import PolicyRepository
from .policies.service import PolicyService
from .settings import Settings
from .users.bootstrap import AdminBootstrap, break_glass_unlock
from .users.repository import UserRepository
from .users.service import UserService

log = logging.getLogger(__name__)

PURGE_INTERVAL = 300.0


@dataclass(frozen=True)
class Repositories:
    """Every repository, built once; the container hands each service only its own."""

    users: UserRepository
    sessions: SessionRepository
    tokens: TokenRepository
    uses: UseRepository
    logins: LoginRepository
    secrets: SecretRepository
    policies: PolicyRepository
    audit: AuditRepository
    keys: KeyRepository
    audit_chain: ChainRepository


class Container(ContainerLifecycle):
    settings: Settings
    storage: Storage
    repos: Repositories
    keyring: KeyRing
    audit: AuditLog
    revocations: Revocations
    verifier: TokenVerifier
    lockouts: Lockouts
    mfa: MfaService
    tokens: TokenService
    login: LoginService
    users: UserService
    bootstrap: AdminBootstrap
    policies: PolicyService
    keys: KeyService

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        settings = self.settings
        self.storage = Storage.open(settings.common)
        stack.push_async_callback(self.storage.aclose)
        db = self.storage.database
        repos = self.repos = Repositories(
            users=UserRepository(db),
            sessions=SessionRepository(db),
            tokens=TokenRepository(db),
            uses=UseRepository(db),
            logins=LoginRepository(db),
            secrets=SecretRepository(db),
            policies=PolicyRepository(db),
            audit=AuditRepository(db),
            keys=KeyRepository(db),
            audit_chain=ChainRepository(db),
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
            repos.audit_chain,
        ):
            await repo.ensure_indexes()
        auth = settings.auth
        keyring = self.keyring = KeyRing(
            retention_seconds=max(auth.session_max, auth.service_ttl) + 300
        )
        if auth.private_key_pem:
            keyring.load_from_config(auth.private_key_pem, auth.previous_key_pems)
        else:
            await keyring.load_from_store(repos.keys)
        mfa_key = auth.mfa_encryption_key or await repos.secrets.get_or_create(
            "mfa-encryption-key", Fernet.generate_key().decode("ascii")
        )
        self._build_services(
            mfa_key.encode("ascii"), await asyncio.to_thread(dummy_hash, auth.bcrypt_rounds)
        )
        await self.policies.seed_defaults()
        await self.bootstrap.ensure_admin()
        if auth.bootstrap_admin_unlock:
            await break_glass_unlock(
                repos.users, repos.logins, self.audit, "BOOTSTRAP_ADMIN_UNLOCK"
            )
        await stack.enter_async_context(
            background(
                _every(auth.key_refresh_seconds, lambda: keyring.reload(repos.keys), "key reload"),
                "key-reload",
            )
        )
        await stack.enter_async_context(
            background(_every(PURGE_INTERVAL, self._purge, "purge"), "purge")
        )
        if self.audit.chain is not None:
            await stack.enter_async_context(
                background(
                    checkpoint_loop(self.audit.chain, settings.audit_chain.checkpoint_seconds),
                    "audit-checkpoint",
                )
            )

    def _build_services(self, mfa_key: bytes, fake_hash: bytes) -> None:
        """Each slice's services, once; ``mfa_key`` encrypts TOTP secrets at rest (a
        bad key stops start-up here, not at the first login), ``fake_hash`` is the
        bcrypt hash at the configured cost checked for unknown users and lockouts."""
        auth, repos, keyring = self.settings.auth, self.repos, self.keyring
        chain_settings = self.settings.audit_chain
        chain = AuditChain(
            repos.audit,
            repos.audit_chain,
            keyring,
            ChainConfig(
                checkpoint_records=chain_settings.checkpoint_records,
                checkpoint_seconds=chain_settings.checkpoint_seconds,
                page_size=chain_settings.page_size,
            ),
        )
        audit = self.audit = AuditLog(repos.audit, chain)
        revocations = self.revocations = Revocations(
            repos.tokens, repos.sessions, repos.users, self.storage.redis, self.storage.bus
        )
        verifier = self.verifier = TokenVerifier(
            auth, keyring, repos.keys, repos.users, repos.sessions, revocations
        )
        lockouts = self.lockouts = Lockouts(auth, repos.logins, audit, fake_hash)
        mfa = self.mfa = MfaService(auth, mfa_key, repos.users, repos.uses, lockouts, audit)
        tokens = self.tokens = TokenService(
            auth,
            keyring,
            repos.tokens,
            repos.sessions,
            repos.uses,
            verifier,
            revocations,
            audit,
        )
        self.login = LoginService(repos.users, lockouts, mfa, tokens, audit, fake_hash)
        users = self.users = UserService(auth, repos.users, revocations, lockouts, audit)
        self.bootstrap = AdminBootstrap(auth, repos.users, users, repos.policies)
        self.policies = PolicyService(repos.policies, audit, self.storage.bus)
        self.keys = KeyService(keyring, repos.keys, audit)

    async def _purge(self) -> None:
        """Collections that would grow forever without TTL indexes (DESIGN §3)."""
        now = int(time.time())
        await self.repos.tokens.purge_expired(now)
        await self.repos.uses.purge_expired(now)
        moment = utcnow()
        known_days = self.settings.auth.known_address_days
        await self.repos.logins.purge(moment, moment - timedelta(days=max(known_days, 1)))


async def _every(interval: float, job: Callable[[], Awaitable[None]], name: str) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except Exception as exc:  # keep the loop alive; the next round retries
            log.warning("%s failed: %s", name, type(exc).__name__)
