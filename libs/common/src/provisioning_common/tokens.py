"""Strict JWT verification shared by both services (DESIGN §4).

Every decode names exactly one algorithm, requires ``exp``, ``iat``, ``iss``,
``aud``, ``jti`` and the expected ``typ``; ``kid`` only selects among our own keys
and ``jku`` / ``x5u`` / ``jwk`` headers are ignored. python-jose 3.5 would accept
a forged HS256 token signed with a DER public key if ``algorithms`` were left out,
and tokens without ``exp``/``aud`` unless told to require them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jose import jwt
from jose.exceptions import JOSEError

ALGORITHM = "RS256"
TOKEN_TYPES = frozenset({"access", "refresh", "service"})


class TokenError(Exception):
    """The token is not acceptable; the message is safe to show."""


class UnknownKeyError(TokenError):
    """The token names a ``kid`` we do not (yet) know: refresh the key set and retry."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    sub: str
    username: str
    roles: tuple[str, ...]
    jti: str
    iat: int
    exp: int
    typ: str
    raw: Mapping[str, Any]


def unverified_kid(token: str) -> str:
    try:
        header = jwt.get_unverified_header(token)
    except JOSEError as exc:
        raise TokenError("Malformed token") from exc
    if header.get("alg") != ALGORITHM:
        raise TokenError("Unsupported token algorithm")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError("Token has no key id")
    return kid


def decode_token(
    token: str,
    keys: Mapping[str, Any],
    *,
    issuer: str,
    audience: str,
    expected_typ: str,
    leeway: int = 0,
) -> TokenClaims:
    """Verify ``token`` against ``keys`` (kid → public JWK dict or PEM) and return its claims."""
    if expected_typ not in TOKEN_TYPES:
        raise ValueError(f"unknown token type {expected_typ!r}")
    kid = unverified_kid(token)
    key = keys.get(kid)
    if key is None:
        raise UnknownKeyError("Unknown signing key")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={
                "require_exp": True,
                "require_iat": True,
                "require_aud": True,
                "require_iss": True,
                "require_jti": True,
                "require_sub": True,
                "leeway": leeway,
            },
        )
    except JOSEError as exc:
        raise TokenError("Invalid or expired token") from exc
    if claims.get("typ") != expected_typ:
        raise TokenError("Wrong token type")
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise TokenError("Malformed roles claim")
    return TokenClaims(
        sub=str(claims["sub"]),
        username=str(claims.get("username", "")),
        roles=tuple(roles),
        jti=str(claims["jti"]),
        iat=int(claims["iat"]),
        exp=int(claims["exp"]),
        typ=str(claims["typ"]),
        raw=claims,
    )


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
