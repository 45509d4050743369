"""``python -m control_center`` runs the service.

``python -m control_center unlock-admin`` is the break-glass for the bootstrap
``admin`` locked out of its account: it lifts the admin's lockouts (every source
address) directly in the database named by ``MONGODB_URL`` / ``MONGODB_DATABASE``,
records ``auth.unlock`` in the audit log (hash-chained and signed with the JWT
signing key, as the service chains its records) and exits (0: done, 1: no ``admin``
user). It needs no running service and no token. ``BOOTSTRAP_ADMIN_UNLOCK=true`` does the
same at every start-up of the service."""

from __future__ import annotations

import asyncio
import sys

from pymongo.asynchronous.database import AsyncDatabase

from provisioning_common.mongo import Document, open_client
from provisioning_common.runner import run_service

from .app import create_app
from .audit.chain_service import AuditChain, ChainConfig
from .audit.repository import AuditRepository, ChainRepository
from .audit.service import AuditLog
from .auth.repository import LoginRepository
from .keys.repository import KeyRepository
from .keys.service import KeyRing
from .settings import Settings
from .users.bootstrap import break_glass_unlock
from .users.repository import UserRepository

USAGE = "usage: python -m control_center [unlock-admin]"


async def unlock_admin(settings: Settings) -> bool:
    client = open_client(settings.common.mongodb_url)
    try:
        db = client[settings.common.database]
        chain = await _audit_chain(settings, db)
        done = await break_glass_unlock(
            UserRepository(db),
            LoginRepository(db),
            AuditLog(AuditRepository(db), chain),
            "unlock-admin command",
        )
        # no periodic checkpoint in a one-shot command: sign the head before exiting
        await chain.checkpoint_now()
        return done
    finally:
        await client.close()


async def _audit_chain(settings: Settings, db: AsyncDatabase[Document]) -> AuditChain:
    """The audit chain as the service's container builds it: the same signing keys
    (configured, or the generations stored in MongoDB) and checkpoint settings."""
    auth = settings.auth
    keyring = KeyRing(retention_seconds=max(auth.session_max, auth.service_ttl) + 300)
    if auth.private_key_pem:
        keyring.load_from_config(auth.private_key_pem, auth.previous_key_pems)
    else:
        await keyring.load_from_store(KeyRepository(db))
    chain_settings = settings.audit_chain
    return AuditChain(
        AuditRepository(db),
        ChainRepository(db),
        keyring,
        ChainConfig(
            checkpoint_records=chain_settings.checkpoint_records,
            checkpoint_seconds=chain_settings.checkpoint_seconds,
            page_size=chain_settings.page_size,
        ),
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        run_service("control_center", Settings.from_env, lambda s: s.common, create_app)
        return
    if args == ["unlock-admin"]:
        done = asyncio.run(unlock_admin(Settings.from_env()))
        print(
            "control_center: lockouts of 'admin' lifted"
            if done
            else "control_center: no 'admin' user in this database",
            file=sys.stderr,
        )
        raise SystemExit(0 if done else 1)
    print(USAGE, file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    main()
