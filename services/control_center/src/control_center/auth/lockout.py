"""Failure budgets and lockouts of login and re-authentication (issue 13).

Two scopes per attempt: the account seen from the source address (budget
LOGIN_FAILURE_LIMIT) and, unless the account has logged in from that address
before, the account as a whole (ACCOUNT_LOGIN_FAILURE_LIMIT, for guessing spread
over many addresses). Exhausting a budget locks that scope with a growing lockout;
so someone who fails from their own address waits and gets in, and an attacker
elsewhere cannot keep the owner out. A guess is reserved (a unique insert) before
the password or the TOTP code is checked, so concurrent attempts never get more
guesses than the budget."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from provisioning_common.errors import TooManyRequests, Unauthorized
from provisioning_common.timeutil import as_utc, utcnow

from ..audit.service import AuditLog
from ..metrics import LOGIN_ATTEMPTS
from ..settings import AuthSettings
from ..users.model import username_key
from .model import lockout_seconds
from .passwords import check_password
from .repository import LoginRepository

LOCKED = "Too many failed login attempts; try again later"
LOCKOUT_MEMORY = timedelta(hours=24)  # lockouts within this span make the next one longer


class LockedOut(TooManyRequests):
    pass


@dataclass(frozen=True)
class _Scope:
    id: str
    kind: str  # "address" or "account"
    limit: int


@dataclass(frozen=True)
class _ScopeState:
    scope: _Scope
    lockouts: int  # lockouts so far: the generation of the guess slots
    lock: dict[str, Any] | None  # the latest lockout
    reset_at: datetime | None  # the latest reset that applies to the scope


def address_scope(key: str, ip: str) -> str:
    return f"{key}|{ip}"


def _remaining(state: _ScopeState, now: datetime) -> float:
    lock = state.lock
    if lock is None:
        return 0.0
    if state.reset_at is not None and state.reset_at >= as_utc(lock["locked_at"]):
        return 0.0  # unlocked since
    return (as_utc(lock["until"]) - now).total_seconds()


class LoginResets(Protocol):
    """Resets of failure budgets (the auth slice's ``LoginRepository`` is one)."""

    async def reset(self, scope: str, at: datetime) -> None: ...


async def unlock_account(
    logins: LoginResets, audit: AuditLog, user: dict[str, Any], actor: str | None, via: str
) -> None:
    """Lift every lockout of ``user`` (the account's and every source address's);
    audited as ``auth.unlock``. Used by the admin endpoint, the ``unlock-admin``
    command and ``BOOTSTRAP_ADMIN_UNLOCK`` (these need no running service)."""
    await logins.reset(str(user["username_key"]), utcnow())
    await audit.record(
        action="auth.unlock",
        resource=f"users/{user['_id']}",
        result="success",
        user_id=actor,
        details={"via": via},
    )


class Lockouts:
    """The failure budgets of every password or TOTP check."""

    def __init__(
        self, settings: AuthSettings, logins: LoginRepository, audit: AuditLog, dummy_hash: bytes
    ) -> None:
        self._settings = settings
        self._logins = logins
        self._audit = audit
        self._dummy_hash = dummy_hash  # bcrypt hash at the configured cost

    async def reserve(
        self, key: str, ip: str, password: str, user: dict[str, Any] | None
    ) -> list[_ScopeState]:
        """Reserve one guess in every scope of the attempt before anything is verified;
        raises :class:`LockedOut` (after a dummy bcrypt check) when a scope is locked or
        its budget is spent."""
        states = await self._states(key, ip)
        now = utcnow()
        for state in states:
            remaining = _remaining(state, now)
            if remaining > 0:
                raise await self._refuse_locked(password, remaining)
        window = int(now.timestamp()) // self._settings.failure_window
        for state in states:
            reset = int(state.reset_at.timestamp() * 1000) if state.reset_at else 0
            prefix = f"{state.scope.id}#{state.lockouts}#{reset}#{window}"
            for n in range(state.scope.limit):
                if await self._logins.claim_slot(f"{prefix}#{n}", state.scope.id, now, ip):
                    break
            else:
                raise await self._refuse_locked(password, await self._lock(state, ip, user))
        return states

    async def still_unlocked(self, key: str, ip: str) -> None:
        """Before a session is issued: a lockout that concurrent failures caused while
        this attempt was being verified stops it too."""
        now = utcnow()
        for state in await self._states(key, ip):
            remaining = _remaining(state, now)
            if remaining > 0:
                LOGIN_ATTEMPTS.labels("locked").inc()
                raise LockedOut(max(1, math.ceil(remaining)), LOCKED)

    async def succeeded(self, key: str, ip: str, now: datetime) -> None:
        """A successful login resets the address's budget and marks the address known."""
        pair = address_scope(key, ip)
        await self._logins.reset(pair, now)
        await self._logins.mark_known(pair, now)

    async def record_failure(
        self, key: str, ip: str, user: dict[str, Any] | None, reason: str
    ) -> None:
        LOGIN_ATTEMPTS.labels("failure").inc()
        user_id = str(user["_id"]) if user else None
        await self._audit.record(
            action="auth.login",
            resource=f"users/{user_id or key}",
            result="failure",
            user_id=user_id,
            details={"reason": reason, "ip": ip},
        )

    async def recheck_password(
        self, user: dict[str, Any], password: str, ip: str, message: str
    ) -> None:
        """Re-authentication of a logged-in user (MFA enrolment, own password change).

        It spends the same per-account failure budget as login: otherwise a stolen
        access token would be a password-guessing oracle at the general rate limit."""
        key = str(user.get("username_key") or username_key(str(user["username"])))
        await self.reserve(key, ip, password, user)
        if not await check_password(password, user["password_hash"]):
            await self.record_failure(key, ip, user, "wrong password at re-authentication")
            raise Unauthorized(message)

    async def unlock(self, user: dict[str, Any], actor: str | None, via: str) -> None:
        await unlock_account(self._logins, self._audit, user, actor, via)

    # -- scopes --------------------------------------------------------------------------
    async def _scope_state(self, scope: _Scope, floor: datetime | None) -> _ScopeState:
        logins = self._logins
        state = await logins.get_state(scope.id) or {}
        reset_at = state.get("reset_at")
        if floor is not None and (reset_at is None or as_utc(reset_at) < floor):
            reset_at = floor
        number = int(state.get("lockouts", 0))
        lock = await logins.lockout(scope.id, number) if number else None
        for _ in range(64):  # the hint may lag behind a lockout another replica claimed
            newer = await logins.lockout(scope.id, number + 1)
            if newer is None:
                break
            number, lock = number + 1, newer
        return _ScopeState(scope, number, lock, as_utc(reset_at) if reset_at else None)

    async def _states(self, key: str, ip: str) -> list[_ScopeState]:
        auth = self._settings
        now = utcnow()
        pair = _Scope(address_scope(key, ip), "address", auth.failure_limit)
        account = _Scope(key, "account", auth.account_failure_limit)
        account_state = await self._scope_state(account, None)
        # an unlock of the account (admin, break-glass) also lifts its per-address lockouts
        pair_state = await self._scope_state(pair, account_state.reset_at)
        known = await self._logins.is_known(pair.id, now - timedelta(days=auth.known_address_days))
        return [pair_state] if known else [pair_state, account_state]

    async def _refuse_locked(self, password: str, seconds: float) -> LockedOut:
        # the same bcrypt time as an evaluated attempt, never against the real hash
        await check_password(password, self._dummy_hash)
        LOGIN_ATTEMPTS.labels("locked").inc()
        return LockedOut(max(1, math.ceil(seconds)), LOCKED)

    async def _lock(self, state: _ScopeState, ip: str, user: dict[str, Any] | None) -> float:
        """The budget of ``state`` is spent: claim the next lockout (one claimant wins
        and audits it); the seconds it runs."""
        auth = self._settings
        now = utcnow()
        prev = state.lock
        streak = 0
        if prev is not None:
            prev_at = as_utc(prev["locked_at"])
            if prev_at > now - LOCKOUT_MEMORY and (
                state.reset_at is None or prev_at > state.reset_at
            ):
                streak = int(prev.get("streak", 0)) + 1
        seconds = lockout_seconds(streak, auth.lockout_base, auth.lockout_max)
        until = now + timedelta(seconds=seconds)
        logins = self._logins
        number = state.lockouts + 1
        if await logins.claim_lockout(state.scope.id, number, now, until, streak):
            await logins.note_lockouts(state.scope.id, number)
            user_id = str(user["_id"]) if user else None
            key = state.scope.id.split("|", 1)[0]
            await self._audit.record(
                action="auth.lockout",
                resource=f"users/{user_id or key}",
                result="success",
                user_id=user_id,
                details={"seconds": seconds, "ip": ip, "scope": state.scope.kind},
            )
            return float(seconds)
        winner = await logins.lockout(state.scope.id, number)
        if winner is None:
            return float(seconds)
        return max(1.0, (as_utc(winner["until"]) - now).total_seconds())
