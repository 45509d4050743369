"""Token verification: signature and claims, whether a token is still active
(revocation, the user's state, the session), and introspection."""

from __future__ import annotations

import asyncio
from typing import Any

from jose import jwt
from jose.exceptions import JOSEError

from provisioning_common.errors import ApiError, Unauthorized
from provisioning_common.timeutil import as_utc, utcnow
from provisioning_common.tokens import (
    TOKEN_TYPES,
    TokenClaims,
    TokenError,
    UnknownKeyError,
    decode_token,
)

from ..keys.model import KeyStore
from ..keys.service import KeyRing
from ..settings import AuthSettings
from .ports import UserRecords
from .repository import SessionRepository
from .revocation import Revocations


def unverified_typ(token: str) -> str | None:
    try:
        typ = jwt.get_unverified_claims(token).get("typ")
    except (JOSEError, AttributeError):
        return None
    return typ if isinstance(typ, str) and typ in TOKEN_TYPES else None


class TokenVerifier:
    def __init__(
        self,
        settings: AuthSettings,
        keyring: KeyRing,
        keys: KeyStore,
        users: UserRecords,
        sessions: SessionRepository,
        revocations: Revocations,
    ) -> None:
        self._settings = settings
        self._keyring = keyring
        self._keys = keys
        self._users = users
        self._sessions = sessions
        self._revocations = revocations

    async def verify(self, token: str, allowed: tuple[str, ...]) -> TokenClaims:
        """Signature and claims (strict, via ``decode_token``); raises Unauthorized."""
        typ = unverified_typ(token)
        if typ is None or typ not in allowed:
            raise Unauthorized("Invalid token type" if typ else "Invalid or expired token")
        auth = self._settings
        for attempt in range(2):
            try:
                return decode_token(
                    token,
                    self._keyring.verification_keys,
                    issuer=auth.issuer,
                    audience=auth.audience,
                    expected_typ=typ,
                )
            except UnknownKeyError as exc:
                # another replica may have rotated a moment ago
                if attempt == 0 and await self._keyring.reload_if_stale(self._keys):
                    continue
                raise Unauthorized(str(exc)) from exc
            except TokenError as exc:
                raise Unauthorized(str(exc)) from exc
        raise Unauthorized("Invalid or expired token")

    async def token_state(self, claims: TokenClaims) -> tuple[bool, dict[str, Any] | None]:
        """Whether a signature-valid token is still active, and its user."""
        if claims.typ == "service":
            # service tokens are short-lived and never revoked one by one: a client
            # removed from SERVICE_CLIENTS loses its tokens at once
            client_id = claims.sub.removeprefix("service:")
            return client_id in self._settings.service_clients, None
        sid = claims.raw.get("sid")
        if not isinstance(sid, str):
            return False, None
        # independent lookups, issued together (this is the introspection hot path)
        revoked, user, session = await asyncio.gather(
            self._revocations.is_jti_revoked(claims.jti),
            self._users.get(claims.sub),
            self._sessions.get(sid),
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

    async def introspect(self, token: str) -> dict[str, Any]:
        try:
            claims = await self.verify(token, tuple(TOKEN_TYPES))
        except ApiError:
            return {"active": False}
        active, _ = await self.token_state(claims)
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
