"""Use cases of the auth slice: login (bcrypt, TOTP, lockout), token issue, refresh
with rotation, logout, revocation, service tokens and introspection."""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
from jose import jwt
from jose.exceptions import JOSEError

from provisioning_common.envelope import format_timestamp
from provisioning_common.errors import (
    ApiError,
    Conflict,
    TooManyRequests,
    Unauthorized,
    UnprocessableEntity,
)
from provisioning_common.events import REVOCATIONS_CHANNEL
from provisioning_common.timeutil import as_utc, utcnow
from provisioning_common.tokens import (
    TOKEN_TYPES,
    TokenClaims,
    TokenError,
    UnknownKeyError,
    decode_token,
)

from ..audit import service as audit
from ..audit.repository import AuditRepository
from ..context import Context
from ..metrics import LOGIN_ATTEMPTS, TOKENS_ISSUED
from ..users.model import login_user, username_key
from .model import (
    Issued,
    SecretBox,
    lockout_seconds,
    new_id,
    service_claims,
    totp_timestep,
    user_claims,
)
from .passwords import check_password
from .repository import LoginRepository

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "Invalid username or password"
LOCKED = "Too many failed login attempts; try again later"
LOCKOUT_MEMORY = timedelta(hours=24)  # lockouts within this span make the next one longer
REVOKED_KEY = "revoked:jti:{}"


class LockedOut(TooManyRequests):
    pass


# --- revocation ---------------------------------------------------------------------------
async def revoke_jti(ctx: Context, jti: str, exp: int, reason: str) -> None:
    """Durable record first (MongoDB), then the Redis fast path and the event."""
    await ctx.repos.tokens.revoke(jti, exp, reason)
    ttl = exp - int(time.time())
    try:
        if ttl > 0:
            await ctx.redis.set(REVOKED_KEY.format(jti), "1", ex=ttl)
        await ctx.bus.publish(REVOCATIONS_CHANNEL, {"jti": jti, "exp": exp})
    except Exception as exc:  # the durable record exists; caches still expire within 30 s
        log.warning("could not publish revocation: %s", type(exc).__name__)


async def revoke_session(ctx: Context, sid: str, reason: str) -> None:
    await ctx.repos.sessions.revoke(sid, reason)
    now = int(time.time())
    for doc in await ctx.repos.tokens.live_of_session(sid, now):
        await revoke_jti(ctx, doc["_id"], int(doc["exp"]), reason)


async def revoke_user(ctx: Context, user_id: str, reason: str) -> None:
    """Every token of the user issued up to now stops working (disable, delete,
    role change)."""
    revoked_before = math.ceil(time.time())
    await ctx.repos.users.update(user_id, {"revoked_before": revoked_before})
    for sid in await ctx.repos.sessions.revoke_user(user_id, reason):
        await revoke_session(ctx, sid, reason)
    try:
        await ctx.bus.publish(
            REVOCATIONS_CHANNEL, {"sub": user_id, "revoked_before": revoked_before}
        )
    except Exception as exc:
        log.warning("could not publish user revocation: %s", type(exc).__name__)


async def is_jti_revoked(ctx: Context, jti: str) -> bool:
    try:
        if await ctx.redis.exists(REVOKED_KEY.format(jti)):
            return True
    except Exception as exc:  # Redis is a cache: the durable record decides
        log.warning("revocation cache unavailable: %s", type(exc).__name__)
    return await ctx.repos.tokens.is_revoked(jti)


# --- verification -------------------------------------------------------------------------
def unverified_typ(token: str) -> str | None:
    try:
        typ = jwt.get_unverified_claims(token).get("typ")
    except (JOSEError, AttributeError):
        return None
    return typ if isinstance(typ, str) and typ in TOKEN_TYPES else None


async def verify(ctx: Context, token: str, allowed: tuple[str, ...]) -> TokenClaims:
    """Signature and claims (strict, via ``decode_token``); raises Unauthorized."""
    typ = unverified_typ(token)
    if typ is None or typ not in allowed:
        raise Unauthorized("Invalid token type" if typ else "Invalid or expired token")
    auth = ctx.settings.auth
    for attempt in range(2):
        try:
            return decode_token(
                token,
                ctx.keyring.verification_keys,
                issuer=auth.issuer,
                audience=auth.audience,
                expected_typ=typ,
            )
        except UnknownKeyError as exc:
            # another replica may have rotated a moment ago
            if attempt == 0 and await ctx.keyring.reload_if_stale(ctx.repos.keys):
                continue
            raise Unauthorized(str(exc)) from exc
        except TokenError as exc:
            raise Unauthorized(str(exc)) from exc
    raise Unauthorized("Invalid or expired token")


async def token_state(ctx: Context, claims: TokenClaims) -> tuple[bool, dict[str, Any] | None]:
    """Whether a signature-valid token is still active, and its user."""
    if claims.typ == "service":
        # service tokens are short-lived and never revoked one by one: a client
        # removed from SERVICE_CLIENTS loses its tokens at once
        client_id = claims.sub.removeprefix("service:")
        return client_id in ctx.settings.auth.service_clients, None
    sid = claims.raw.get("sid")
    if not isinstance(sid, str):
        return False, None
    # independent lookups, issued together (this is the introspection hot path)
    revoked, user, session = await asyncio.gather(
        is_jti_revoked(ctx, claims.jti),
        ctx.repos.users.get(claims.sub),
        ctx.repos.sessions.get(sid),
    )
    if revoked or user is None or not user.get("enabled", True):
        return False, None
    if claims.iat < int(user.get("revoked_before", 0)):
        return False, None
    if session is None or session.get("revoked_at") is not None:
        return False, None
    if session.get("user_id") != claims.sub or as_utc(session["expires_at"]) <= utcnow():
        return False, None
    return True, user


# --- issuing ------------------------------------------------------------------------------
def _sign(ctx: Context, claims: dict[str, Any]) -> Issued:
    token = ctx.keyring.sign(claims)
    TOKENS_ISSUED.labels(claims["typ"]).inc()
    return Issued(token, claims["jti"], int(claims["exp"]), claims)


async def issue_user_token(
    ctx: Context, user: dict[str, Any], typ: str, sid: str, session_expires: int, ttl: int
) -> Issued:
    auth = ctx.settings.auth
    now = int(time.time())
    # never before the user's revocation point, even within the same second
    iat = max(now, int(user.get("revoked_before", 0)))
    exp = min(iat + ttl, session_expires)
    issued = _sign(
        ctx,
        user_claims(
            user=user,
            typ=typ,
            sid=sid,
            iat=iat,
            exp=exp,
            issuer=auth.issuer,
            audience=auth.audience,
        ),
    )
    await ctx.repos.tokens.record(
        issued.jti, sid=sid, user_id=str(user["_id"]), typ=typ, exp=issued.exp
    )
    return issued


def _expiry(exp: int) -> str:
    return format_timestamp(datetime.fromtimestamp(exp, tz=utcnow().tzinfo))


async def start_session(ctx: Context, user: dict[str, Any]) -> dict[str, Any]:
    auth = ctx.settings.auth
    sid = new_id()
    created = utcnow()
    expires = created + timedelta(seconds=auth.session_max)
    await ctx.repos.sessions.create(sid, str(user["_id"]), created, expires)
    limit = int(expires.timestamp())
    access = await issue_user_token(ctx, user, "access", sid, limit, auth.access_ttl)
    refresh = await issue_user_token(ctx, user, "refresh", sid, limit, auth.refresh_ttl)
    return {
        "token": access.token,
        "expires_at": _expiry(access.exp),
        "user": login_user(user),
        "refresh_token": refresh.token,
        "refresh_expires_at": _expiry(refresh.exp),
    }


# --- login --------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoginAttempt:
    username: str
    password: str
    mfa_code: str | None
    ip: str


# Lockouts (issue 13). Two scopes per attempt: the account seen from the source
# address (budget LOGIN_FAILURE_LIMIT) and, unless the account has logged in from
# that address before, the account as a whole (ACCOUNT_LOGIN_FAILURE_LIMIT, for
# guessing spread over many addresses). Exhausting a budget locks that scope with a
# growing lockout; so someone who fails from their own address waits and gets in,
# and an attacker elsewhere cannot keep the owner out. A guess is reserved (a unique
# insert) before the password or the TOTP code is checked, so concurrent attempts
# never get more guesses than the budget.
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


async def _scope_state(ctx: Context, scope: _Scope, floor: datetime | None) -> _ScopeState:
    logins = ctx.repos.logins
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


def _remaining(state: _ScopeState, now: datetime) -> float:
    lock = state.lock
    if lock is None:
        return 0.0
    if state.reset_at is not None and state.reset_at >= as_utc(lock["locked_at"]):
        return 0.0  # unlocked since
    return (as_utc(lock["until"]) - now).total_seconds()


async def _states(ctx: Context, key: str, ip: str) -> list[_ScopeState]:
    auth = ctx.settings.auth
    now = utcnow()
    pair = _Scope(address_scope(key, ip), "address", auth.failure_limit)
    account = _Scope(key, "account", auth.account_failure_limit)
    account_state = await _scope_state(ctx, account, None)
    # an unlock of the account (admin, break-glass) also lifts its per-address lockouts
    pair_state = await _scope_state(ctx, pair, account_state.reset_at)
    known = await ctx.repos.logins.is_known(pair.id, now - timedelta(days=auth.known_address_days))
    return [pair_state] if known else [pair_state, account_state]


async def _refuse_locked(ctx: Context, password: str, seconds: float) -> LockedOut:
    # the same bcrypt time as an evaluated attempt, never against the real hash
    await check_password(password, ctx.dummy_hash)
    LOGIN_ATTEMPTS.labels("locked").inc()
    return LockedOut(max(1, math.ceil(seconds)), LOCKED)


async def _lock(ctx: Context, state: _ScopeState, ip: str, user: dict[str, Any] | None) -> float:
    """The budget of ``state`` is spent: claim the next lockout (one claimant wins and
    audits it); the seconds it runs."""
    auth = ctx.settings.auth
    now = utcnow()
    prev = state.lock
    streak = 0
    if prev is not None:
        prev_at = as_utc(prev["locked_at"])
        if prev_at > now - LOCKOUT_MEMORY and (state.reset_at is None or prev_at > state.reset_at):
            streak = int(prev.get("streak", 0)) + 1
    seconds = lockout_seconds(streak, auth.lockout_base, auth.lockout_max)
    until = now + timedelta(seconds=seconds)
    logins = ctx.repos.logins
    number = state.lockouts + 1
    if await logins.claim_lockout(state.scope.id, number, now, until, streak):
        await logins.note_lockouts(state.scope.id, number)
        user_id = str(user["_id"]) if user else None
        key = state.scope.id.split("|", 1)[0]
        await audit.record(
            ctx.repos.audit,
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


async def reserve_attempt(
    ctx: Context, key: str, ip: str, password: str, user: dict[str, Any] | None
) -> list[_ScopeState]:
    """Reserve one guess in every scope of the attempt before anything is verified;
    raises :class:`LockedOut` (after a dummy bcrypt check) when a scope is locked or
    its budget is spent."""
    states = await _states(ctx, key, ip)
    now = utcnow()
    for state in states:
        remaining = _remaining(state, now)
        if remaining > 0:
            raise await _refuse_locked(ctx, password, remaining)
    window = int(now.timestamp()) // ctx.settings.auth.failure_window
    for state in states:
        reset = int(state.reset_at.timestamp() * 1000) if state.reset_at else 0
        prefix = f"{state.scope.id}#{state.lockouts}#{reset}#{window}"
        for n in range(state.scope.limit):
            if await ctx.repos.logins.claim_slot(f"{prefix}#{n}", state.scope.id, now, ip):
                break
        else:
            raise await _refuse_locked(ctx, password, await _lock(ctx, state, ip, user))
    return states


async def _still_unlocked(ctx: Context, key: str, ip: str, password: str) -> None:
    """Before a session is issued: a lockout that concurrent failures caused while
    this attempt was being verified stops it too."""
    now = utcnow()
    for state in await _states(ctx, key, ip):
        remaining = _remaining(state, now)
        if remaining > 0:
            LOGIN_ATTEMPTS.labels("locked").inc()
            raise LockedOut(max(1, math.ceil(remaining)), LOCKED)


async def _record_failure(
    ctx: Context, attempt: LoginAttempt, key: str, user: dict[str, Any] | None, reason: str
) -> None:
    LOGIN_ATTEMPTS.labels("failure").inc()
    user_id = str(user["_id"]) if user else None
    await audit.record(
        ctx.repos.audit,
        action="auth.login",
        resource=f"users/{user_id or key}",
        result="failure",
        user_id=user_id,
        details={"reason": reason, "ip": attempt.ip},
    )


async def login(ctx: Context, attempt: LoginAttempt) -> dict[str, Any]:
    key = username_key(attempt.username)
    user = await ctx.repos.users.by_username_key(key)
    await reserve_attempt(ctx, key, attempt.ip, attempt.password, user)
    # unknown users cost one bcrypt check too, and get the same answer
    hashed: str | bytes = user["password_hash"] if user else ctx.dummy_hash
    password_ok = await check_password(attempt.password, hashed)
    if user is None or not password_ok or not user.get("enabled", True):
        reason = (
            "unknown user"
            if user is None
            else ("wrong password" if not password_ok else "disabled")
        )
        await _record_failure(ctx, attempt, key, user, reason)
        raise Unauthorized(INVALID_CREDENTIALS)
    if user.get("mfa_enabled"):
        await _check_mfa(ctx, attempt, key, user)
    await _still_unlocked(ctx, key, attempt.ip, attempt.password)
    now = utcnow()
    await ctx.repos.users.update(str(user["_id"]), {"last_login": now})
    pair = address_scope(key, attempt.ip)
    await ctx.repos.logins.reset(pair, now)
    await ctx.repos.logins.mark_known(pair, now)
    LOGIN_ATTEMPTS.labels("success").inc()
    data = await start_session(ctx, user)
    await audit.record(
        ctx.repos.audit,
        action="auth.login",
        resource=f"users/{user['_id']}",
        result="success",
        user_id=str(user["_id"]),
        details={"ip": attempt.ip, "mfa": bool(user.get("mfa_enabled"))},
    )
    return data


async def recheck_password(
    ctx: Context, user: dict[str, Any], password: str, ip: str, message: str
) -> None:
    """Re-authentication of a logged-in user (MFA enrolment, own password change).

    It spends the same per-account failure budget as login: otherwise a stolen
    access token would be a password-guessing oracle at the general rate limit."""
    key = str(user.get("username_key") or username_key(str(user["username"])))
    await reserve_attempt(ctx, key, ip, password, user)
    if not await check_password(password, user["password_hash"]):
        attempt = LoginAttempt(str(user["username"]), "", None, ip)
        await _record_failure(ctx, attempt, key, user, "wrong password at re-authentication")
        raise Unauthorized(message)


async def unlock_account(
    logins: LoginRepository,
    audit_repo: AuditRepository,
    user: dict[str, Any],
    actor: str | None,
    via: str,
) -> None:
    """Lift every lockout of ``user`` (the account's and every source address's);
    audited as ``auth.unlock``. Used by the admin endpoint, the ``unlock-admin``
    command and ``BOOTSTRAP_ADMIN_UNLOCK`` (these need no running service)."""
    await logins.reset(str(user["username_key"]), utcnow())
    await audit.record(
        audit_repo,
        action="auth.unlock",
        resource=f"users/{user['_id']}",
        result="success",
        user_id=actor,
        details={"via": via},
    )


async def _check_mfa(ctx: Context, attempt: LoginAttempt, key: str, user: dict[str, Any]) -> None:
    if not attempt.mfa_code:
        LOGIN_ATTEMPTS.labels("mfa_required").inc()
        raise Unauthorized("MFA code required")
    secret = SecretBox(ctx.mfa_key).open(str(user.get("mfa_secret") or ""))
    if secret is None:
        log.error("stored MFA secret cannot be decrypted", extra={"user_id": user["_id"]})
        raise Unauthorized("Invalid MFA code")
    if not await consume_totp(ctx, str(user["_id"]), secret, attempt.mfa_code):
        await _record_failure(ctx, attempt, key, user, "invalid mfa code")
        raise Unauthorized("Invalid MFA code")


async def consume_totp(ctx: Context, user_id: str, secret: str, code: str) -> bool:
    """Accept ``code`` once: its ``<user>:<step>`` is recorded by a unique insert,
    so a replay (or a race of two requests with one code) fails."""
    step = totp_timestep(secret, code, time.time())
    if step is None:
        return False
    expires = (step + 3) * 30  # the step cannot be valid after this
    return await ctx.repos.uses.use_once(f"totp:{user_id}:{step}", expires)


# --- refresh / logout ---------------------------------------------------------------------
async def refresh(ctx: Context, token: str, ip: str) -> dict[str, Any]:
    claims = await verify(ctx, token, ("access", "refresh"))
    sid = claims.raw.get("sid")
    if not isinstance(sid, str):
        raise Unauthorized("Invalid or expired token")
    # single use, decided by a unique insert (two concurrent refreshes: one wins)
    first_use = await ctx.repos.uses.use_once(f"refresh:{claims.jti}", claims.exp)
    if not first_use:
        if claims.typ == "refresh":
            # a rotated refresh token came back: assume theft, end the whole family
            await revoke_session(ctx, sid, "refresh token reuse")
            await audit.record(
                ctx.repos.audit,
                action="auth.refresh",
                resource=f"sessions/{sid}",
                result="failure",
                user_id=claims.sub,
                details={"reason": "refresh token reuse", "ip": ip},
            )
        raise Unauthorized("Token already used")
    active, user = await token_state(ctx, claims)
    if not active or user is None:
        raise Unauthorized("Invalid or expired token")
    session = await ctx.repos.sessions.get(sid)
    assert session is not None  # token_state checked it
    limit = int(as_utc(session["expires_at"]).timestamp())
    auth = ctx.settings.auth
    access = await issue_user_token(ctx, user, "access", sid, limit, auth.access_ttl)
    await revoke_jti(ctx, claims.jti, claims.exp, "refreshed")
    data: dict[str, Any] = {"token": access.token, "expires_at": _expiry(access.exp)}
    if claims.typ == "refresh":
        new_refresh = await issue_user_token(ctx, user, "refresh", sid, limit, auth.refresh_ttl)
        data["refresh_token"] = new_refresh.token
        data["refresh_expires_at"] = _expiry(new_refresh.exp)
    await audit.record(
        ctx.repos.audit,
        action="auth.refresh",
        resource=f"sessions/{sid}",
        result="success",
        user_id=claims.sub,
        details={"ip": ip, "presented": claims.typ},
    )
    return data


async def logout(ctx: Context, claims: TokenClaims, ip: str) -> None:
    await revoke_jti(ctx, claims.jti, claims.exp, "logout")
    sid = claims.raw.get("sid")
    if isinstance(sid, str):
        await revoke_session(ctx, sid, "logout")
    await audit.record(
        ctx.repos.audit,
        action="auth.logout",
        resource=f"sessions/{sid}",
        result="success",
        user_id=claims.sub,
        details={"ip": ip},
    )


# --- service tokens and introspection -----------------------------------------------------
async def service_token(ctx: Context, client_id: str, secret: str) -> dict[str, Any]:
    clients = ctx.settings.auth.service_clients
    expected = clients.get(client_id)
    # compare against something even for unknown ids, in constant time
    valid = hmac.compare_digest((expected or "\x00" * 32).encode(), secret.encode())
    if expected is None or not valid:
        raise Unauthorized("Invalid client credentials")
    auth = ctx.settings.auth
    now = int(time.time())
    issued = _sign(
        ctx,
        service_claims(
            client_id=client_id,
            iat=now,
            exp=now + auth.service_ttl,
            issuer=auth.issuer,
            audience=auth.audience,
        ),
    )
    return {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": auth.service_ttl,
        "expires_at": _expiry(issued.exp),
    }


async def introspect(ctx: Context, token: str) -> dict[str, Any]:
    try:
        claims = await verify(ctx, token, tuple(TOKEN_TYPES))
    except ApiError:
        return {"active": False}
    active, _ = await token_state(ctx, claims)
    if not active:
        return {"active": False}
    return {
        "active": True,
        "sub": claims.sub,
        "username": claims.username,
        "roles": list(claims.roles),
        "exp": claims.exp,
        "typ": claims.typ,
        "jti": claims.jti,
    }


# --- MFA enrolment ------------------------------------------------------------------------
async def mfa_enroll(
    ctx: Context, user: dict[str, Any], password: str, ip: str = "unknown"
) -> dict[str, Any]:
    try:
        await recheck_password(ctx, user, password, ip, "Invalid password")
    except Unauthorized:
        await audit.record(
            ctx.repos.audit,
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
    box = SecretBox(ctx.mfa_key)
    await ctx.repos.users.update(str(user["_id"]), {"mfa_pending": box.seal(secret)})
    uri = pyotp.TOTP(secret).provisioning_uri(
        name=user["username"], issuer_name=ctx.settings.auth.mfa_issuer
    )
    await audit.record(
        ctx.repos.audit,
        action="auth.mfa.enroll",
        resource=f"users/{user['_id']}",
        result="success",
        user_id=str(user["_id"]),
    )
    return {"secret": secret, "otpauth_uri": uri}


async def mfa_verify(ctx: Context, user: dict[str, Any], code: str) -> None:
    pending = user.get("mfa_pending")
    if not pending:
        raise UnprocessableEntity("No MFA enrolment in progress; call /auth/mfa/enroll first")
    secret = SecretBox(ctx.mfa_key).open(str(pending))
    if secret is None or not await consume_totp(ctx, str(user["_id"]), secret, code):
        await audit.record(
            ctx.repos.audit,
            action="auth.mfa.verify",
            resource=f"users/{user['_id']}",
            result="failure",
            user_id=str(user["_id"]),
        )
        raise Unauthorized("Invalid MFA code")
    await ctx.repos.users.update(
        str(user["_id"]), {"mfa_enabled": True, "mfa_secret": pending}, unset=("mfa_pending",)
    )
    await audit.record(
        ctx.repos.audit,
        action="auth.mfa.verify",
        resource=f"users/{user['_id']}",
        result="success",
        user_id=str(user["_id"]),
    )
