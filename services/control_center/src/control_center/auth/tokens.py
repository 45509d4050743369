"""Issuing tokens: sessions with their access and refresh tokens, refresh with
rotation (a reused refresh token ends the session), logout and service tokens
(client-credentials grant)."""

from __future__ import annotations

import hmac
import time
from datetime import datetime, timedelta
from typing import Any

from provisioning_common.envelope import format_timestamp
from provisioning_common.errors import Unauthorized
from provisioning_common.timeutil import as_utc, utcnow
from provisioning_common.tokens import TokenClaims

from ..audit.service import AuditLog
from ..keys.service import KeyRing
from ..metrics import TOKENS_ISSUED
from ..settings import AuthSettings
from ..users.model import login_user
from .model import Issued, new_id, service_claims, user_claims
from .repository import SessionRepository, TokenRepository, UseRepository
from .revocation import Revocations
from .verification import TokenVerifier


def _expiry(exp: int) -> str:
    return format_timestamp(datetime.fromtimestamp(exp, tz=utcnow().tzinfo))


class TokenService:
    def __init__(
        self,
        settings: AuthSettings,
        keyring: KeyRing,
        tokens: TokenRepository,
        sessions: SessionRepository,
        uses: UseRepository,
        verifier: TokenVerifier,
        revocations: Revocations,
        audit: AuditLog,
    ) -> None:
        self._settings = settings
        self._keyring = keyring
        self._tokens = tokens
        self._sessions = sessions
        self._uses = uses
        self._verifier = verifier
        self._revocations = revocations
        self._audit = audit

    def _sign(self, claims: dict[str, Any]) -> Issued:
        token = self._keyring.sign(claims)
        TOKENS_ISSUED.labels(claims["typ"]).inc()
        return Issued(token, claims["jti"], int(claims["exp"]), claims)

    async def issue_user_token(
        self, user: dict[str, Any], typ: str, sid: str, session_expires: int, ttl: int
    ) -> Issued:
        auth = self._settings
        now = int(time.time())
        # never before the user's revocation point, even within the same second
        iat = max(now, int(user.get("revoked_before", 0)))
        exp = min(iat + ttl, session_expires)
        issued = self._sign(
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
        await self._tokens.record(
            issued.jti, sid=sid, user_id=str(user["_id"]), typ=typ, exp=issued.exp
        )
        return issued

    async def start_session(self, user: dict[str, Any]) -> dict[str, Any]:
        auth = self._settings
        sid = new_id()
        created = utcnow()
        expires = created + timedelta(seconds=auth.session_max)
        await self._sessions.create(sid, str(user["_id"]), created, expires)
        limit = int(expires.timestamp())
        access = await self.issue_user_token(user, "access", sid, limit, auth.access_ttl)
        refresh = await self.issue_user_token(user, "refresh", sid, limit, auth.refresh_ttl)
        return {
            "token": access.token,
            "expires_at": _expiry(access.exp),
            "user": login_user(user),
            "refresh_token": refresh.token,
            "refresh_expires_at": _expiry(refresh.exp),
        }

    async def refresh(self, token: str, ip: str) -> dict[str, Any]:
        claims = await self._verifier.verify(token, ("access", "refresh"))
        sid = claims.raw.get("sid")
        if not isinstance(sid, str):
            raise Unauthorized("Invalid or expired token")
        # single use, decided by a unique insert (two concurrent refreshes: one wins)
        first_use = await self._uses.use_once(f"refresh:{claims.jti}", claims.exp)
        if not first_use:
            if claims.typ == "refresh":
                # a rotated refresh token came back: assume theft, end the whole family
                await self._revocations.revoke_session(sid, "refresh token reuse")
                await self._audit.record(
                    action="auth.refresh",
                    resource=f"sessions/{sid}",
                    result="failure",
                    user_id=claims.sub,
                    details={"reason": "refresh token reuse", "ip": ip},
                )
            raise Unauthorized("Token already used")
        active, user = await self._verifier.token_state(claims)
        if not active or user is None:
            raise Unauthorized("Invalid or expired token")
        session = await self._sessions.get(sid)
        assert session is not None  # token_state checked it
        limit = int(as_utc(session["expires_at"]).timestamp())
        auth = self._settings
        access = await self.issue_user_token(user, "access", sid, limit, auth.access_ttl)
        await self._revocations.revoke_jti(claims.jti, claims.exp, "refreshed")
        data: dict[str, Any] = {"token": access.token, "expires_at": _expiry(access.exp)}
        if claims.typ == "refresh":
            new_refresh = await self.issue_user_token(user, "refresh", sid, limit, auth.refresh_ttl)
            data["refresh_token"] = new_refresh.token
            data["refresh_expires_at"] = _expiry(new_refresh.exp)
        await self._audit.record(
            action="auth.refresh",
            resource=f"sessions/{sid}",
            result="success",
            user_id=claims.sub,
            details={"ip": ip, "presented": claims.typ},
        )
        return data

    async def logout(self, claims: TokenClaims, ip: str) -> None:
        await self._revocations.revoke_jti(claims.jti, claims.exp, "logout")
        sid = claims.raw.get("sid")
        if isinstance(sid, str):
            await self._revocations.revoke_session(sid, "logout")
        await self._audit.record(
            action="auth.logout",
            resource=f"sessions/{sid}",
            result="success",
            user_id=claims.sub,
            details={"ip": ip},
        )

    async def service_token(self, client_id: str, secret: str) -> dict[str, Any]:
        auth = self._settings
        expected = auth.service_clients.get(client_id)
        # compare against something even for unknown ids, in constant time
        valid = hmac.compare_digest((expected or "\x00" * 32).encode(), secret.encode())
        if expected is None or not valid:
            raise Unauthorized("Invalid client credentials")
        now = int(time.time())
        issued = self._sign(
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
