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


async def _check_lockout(ctx: Context, key: str) -> None:
    lock = await ctx.repos.logins.latest_lockout(key)
    if lock is None:
        return
    reset_at = await ctx.repos.logins.reset_at(key)
    locked_at = as_utc(lock["locked_at"])
    if reset_at is not None and as_utc(reset_at) >= locked_at:
        return  # an admin unlocked it
    remaining = (as_utc(lock["until"]) - utcnow()).total_seconds()
    if remaining > 0:
        LOGIN_ATTEMPTS.labels("locked").inc()
        raise LockedOut(math.ceil(remaining), LOCKED)


async def _record_failure(
    ctx: Context, attempt: LoginAttempt, key: str, user: dict[str, Any] | None, reason: str
) -> None:
    auth = ctx.settings.auth
    now = utcnow()
    logins = ctx.repos.logins
    await logins.add_failure(key, now, attempt.ip)
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
    since = now - timedelta(seconds=auth.failure_window)
    reset_at = await logins.reset_at(key)
    if reset_at is not None:
        since = max(since, as_utc(reset_at))
    last = await logins.latest_lockout(key)
    if last is not None:
        since = max(since, as_utc(last["locked_at"]))
    if await logins.count_failures(key, since) < auth.failure_limit:
        return
    number = await logins.count_lockouts(key) + 1
    recent = await logins.count_lockouts(key, now - LOCKOUT_MEMORY)
    seconds = lockout_seconds(recent, auth.lockout_base, auth.lockout_max)
    if await logins.claim_lockout(key, number, now, now + timedelta(seconds=seconds)):
        await audit.record(
            ctx.repos.audit,
            action="auth.lockout",
            resource=f"users/{user_id or key}",
            result="success",
            user_id=user_id,
            details={"seconds": seconds, "ip": attempt.ip},
        )


async def login(ctx: Context, attempt: LoginAttempt) -> dict[str, Any]:
    key = username_key(attempt.username)
    await _check_lockout(ctx, key)
    user = await ctx.repos.users.by_username_key(key)
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
    now = utcnow()
    await ctx.repos.users.update(str(user["_id"]), {"last_login": now})
    await ctx.repos.logins.reset(key, now)
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
    await _check_lockout(ctx, key)
    if not await check_password(password, user["password_hash"]):
        attempt = LoginAttempt(str(user["username"]), "", None, ip)
        await _record_failure(ctx, attempt, key, user, "wrong password at re-authentication")
        raise Unauthorized(message)


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
