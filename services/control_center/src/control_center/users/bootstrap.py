"""The bootstrap ``admin``: created once on the first start, and the break-glass
unlock of its lockouts."""

from __future__ import annotations

import logging
import secrets
import sys

from provisioning_common.errors import Conflict, UnprocessableEntity

from ..audit.service import AuditLog
from ..auth.lockout import LoginResets, unlock_account
from ..settings import AuthSettings
from .ports import BootstrapMarkers
from .repository import UserRepository
from .service import UserService

log = logging.getLogger(__name__)

BOOTSTRAP_MARKER = "bootstrap:admin"


class AdminBootstrap:
    def __init__(
        self,
        settings: AuthSettings,
        users: UserRepository,
        user_service: UserService,
        markers: BootstrapMarkers,  # the bootstrap markers live with the policies
    ) -> None:
        self._settings = settings
        self._users = users
        self._user_service = user_service
        self._markers = markers

    async def ensure_admin(self) -> None:
        """First start: create ``admin`` from BOOTSTRAP_ADMIN_PASSWORD, or generate a
        password and print it once. A marker keeps a deleted admin from coming back;
        the unique username decides between replicas starting together."""
        if await self._markers.has_marker(BOOTSTRAP_MARKER):
            return
        if await self._users.by_username_key("admin") is None:
            password = self._settings.bootstrap_admin_password
            generated = password is None
            if password is None:
                password = secrets.token_urlsafe(18)
            try:
                await self._user_service.create(
                    {
                        "username": "admin",
                        "email": self._settings.bootstrap_admin_email,
                        "password": password,
                        "roles": ["admin"],
                        "enabled": True,
                    },
                    None,
                )
                if generated:
                    # printed once, never logged: the operator reads it from the console
                    print(
                        f"control_center: generated bootstrap password for 'admin': {password}",
                        file=sys.stderr,
                        flush=True,
                    )
                log.info("bootstrap admin created")
            except Conflict:
                pass  # another replica created it
            except UnprocessableEntity as exc:
                log.error("BOOTSTRAP_ADMIN_PASSWORD rejected: %s", exc.message)
                raise
        await self._markers.claim_marker(BOOTSTRAP_MARKER)


async def break_glass_unlock(
    users: UserRepository, logins: LoginResets, audit: AuditLog, via: str
) -> bool:
    """Lift the bootstrap ``admin``'s lockouts without an admin session (the
    ``unlock-admin`` command, ``BOOTSTRAP_ADMIN_UNLOCK=true``); False when there is
    no ``admin`` user."""
    admin = await users.by_username_key("admin")
    if admin is None:
        return False
    await unlock_account(logins, audit, admin, None, via)
    log.warning("break-glass: lockouts of 'admin' lifted (%s)", via)
    return True
