"""TOTP multi-factor authentication: enrolment, activation and the code check at
login; every code is accepted once."""

from __future__ import annotations

import logging
import time
from typing import Any

import pyotp

from provisioning_common.errors import Conflict, Unauthorized, UnprocessableEntity

from ..audit.service import AuditLog
from ..metrics import LOGIN_ATTEMPTS
from ..settings import AuthSettings
from .lockout import Lockouts
from .model import SecretBox, totp_timestep
from .ports import UserRecords
from .repository import UseRepository

log = logging.getLogger(__name__)


class MfaService:
    def __init__(
        self,
        settings: AuthSettings,
        mfa_key: bytes,  # Fernet key that encrypts TOTP secrets at rest
        users: UserRecords,
        uses: UseRepository,
        lockouts: Lockouts,
        audit: AuditLog,
    ) -> None:
        self._settings = settings
        self._box = SecretBox(mfa_key)
        self._users = users
        self._uses = uses
        self._lockouts = lockouts
        self._audit = audit

    async def check_login(self, user: dict[str, Any], code: str | None, key: str, ip: str) -> None:
        """The second factor of a login whose password was right; raises Unauthorized."""
        if not code:
            LOGIN_ATTEMPTS.labels("mfa_required").inc()
            raise Unauthorized("MFA code required")
        secret = self._box.open(str(user.get("mfa_secret") or ""))
        if secret is None:
            log.error("stored MFA secret cannot be decrypted", extra={"user_id": user["_id"]})
            raise Unauthorized("Invalid MFA code")
        if not await self.consume_totp(str(user["_id"]), secret, code):
            await self._lockouts.record_failure(key, ip, user, "invalid mfa code")
            raise Unauthorized("Invalid MFA code")

    async def consume_totp(self, user_id: str, secret: str, code: str) -> bool:
        """Accept ``code`` once: its ``<user>:<step>`` is recorded by a unique insert,
        so a replay (or a race of two requests with one code) fails."""
        step = totp_timestep(secret, code, time.time())
        if step is None:
            return False
        expires = (step + 3) * 30  # the step cannot be valid after this
        return await self._uses.use_once(f"totp:{user_id}:{step}", expires)

    async def enroll(
        self, user: dict[str, Any], password: str, ip: str = "unknown"
    ) -> dict[str, Any]:
        try:
            await self._lockouts.recheck_password(user, password, ip, "Invalid password")
        except Unauthorized:
            await self._audit.record(
                action="auth.mfa.enroll",
                resource=f"users/{user['_id']}",
                result="failure",
                user_id=str(user["_id"]),
                details={"reason": "wrong password"},
            )
            raise
        if user.get("mfa_enabled"):
            raise Conflict("MFA is already enabled; an administrator can reset it")
        secret = pyotp.random_base32()
        await self._users.update(str(user["_id"]), {"mfa_pending": self._box.seal(secret)})
        uri = pyotp.TOTP(secret).provisioning_uri(
            name=user["username"], issuer_name=self._settings.mfa_issuer
        )
        await self._audit.record(
            action="auth.mfa.enroll",
            resource=f"users/{user['_id']}",
            result="success",
            user_id=str(user["_id"]),
        )
        return {"secret": secret, "otpauth_uri": uri}

    async def verify(self, user: dict[str, Any], code: str) -> None:
        pending = user.get("mfa_pending")
        if not pending:
            raise UnprocessableEntity("No MFA enrolment in progress; call /auth/mfa/enroll first")
        secret = self._box.open(str(pending))
        if secret is None or not await self.consume_totp(str(user["_id"]), secret, code):
            await self._audit.record(
                action="auth.mfa.verify",
                resource=f"users/{user['_id']}",
                result="failure",
                user_id=str(user["_id"]),
            )
            raise Unauthorized("Invalid MFA code")
        await self._users.update(
            str(user["_id"]), {"mfa_enabled": True, "mfa_secret": pending}, unset=("mfa_pending",)
        )
        await self._audit.record(
            action="auth.mfa.verify",
            resource=f"users/{user['_id']}",
            result="success",
            user_id=str(user["_id"]),
        )
