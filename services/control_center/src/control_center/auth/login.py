"""Login: password (bcrypt), the failure budgets, TOTP when enrolled, then a new
session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provisioning_common.errors import Unauthorized
from provisioning_common.timeutil import utcnow

from ..audit.service import AuditLog
from ..metrics import LOGIN_ATTEMPTS
from ..users.model import username_key
from .lockout import Lockouts
from .mfa import MfaService
from .passwords import check_password
from .ports import UserRecords
from .tokens import TokenService

INVALID_CREDENTIALS = "Invalid username or password"


@dataclass(frozen=True)
class LoginAttempt:
    username: str
    password: str
    mfa_code: str | None
    ip: str


class LoginService:
    def __init__(
        self,
        users: UserRecords,
        lockouts: Lockouts,
        mfa: MfaService,
        tokens: TokenService,
        audit: AuditLog,
        dummy_hash: bytes,  # bcrypt hash at the configured cost, checked for unknown users
    ) -> None:
        self._users = users
        self._lockouts = lockouts
        self._mfa = mfa
        self._tokens = tokens
        self._audit = audit
        self._dummy_hash = dummy_hash

    async def login(self, attempt: LoginAttempt) -> dict[str, Any]:
        key = username_key(attempt.username)
        user = await self._users.by_username_key(key)
        await self._lockouts.reserve(key, attempt.ip, attempt.password, user)
        # unknown users cost one bcrypt check too, and get the same answer
        hashed: str | bytes = user["password_hash"] if user else self._dummy_hash
        password_ok = await check_password(attempt.password, hashed)
        if user is None or not password_ok or not user.get("enabled", True):
            reason = (
                "unknown user"
                if user is None
                else ("wrong password" if not password_ok else "disabled")
            )
            await self._lockouts.record_failure(key, attempt.ip, user, reason)
            raise Unauthorized(INVALID_CREDENTIALS)
        if user.get("mfa_enabled"):
            await self._mfa.check_login(user, attempt.mfa_code, key, attempt.ip)
        await self._lockouts.still_unlocked(key, attempt.ip)
        now = utcnow()
        await self._users.update(str(user["_id"]), {"last_login": now})
        await self._lockouts.succeeded(key, attempt.ip, now)
        LOGIN_ATTEMPTS.labels("success").inc()
        data = await self._tokens.start_session(user)
        await self._audit.record(
            action="auth.login",
            resource=f"users/{user['_id']}",
            result="success",
            user_id=str(user["_id"]),
            details={"ip": attempt.ip, "mfa": bool(user.get("mfa_enabled"))},
        )
        return data
