"""Pure rules of the auth slice: token claims, TOTP checks, lockout durations and
the at-rest encryption of TOTP secrets. No I/O here."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from typing import Any

import pyotp
from cryptography.fernet import Fernet, InvalidToken

TOTP_DIGITS = 6
TOTP_STEP = 30
TOTP_DRIFT_STEPS = 1


@dataclass(frozen=True)
class Issued:
    token: str
    jti: str
    exp: int
    claims: dict[str, Any]


def new_id() -> str:
    return uuid.uuid4().hex


def user_claims(
    *, user: dict[str, Any], typ: str, sid: str, iat: int, exp: int, issuer: str, audience: str
) -> dict[str, Any]:
    return {
        "sub": str(user["_id"]),
        "username": user["username"],
        "roles": list(user.get("roles", [])),
        "jti": new_id(),
        "iat": iat,
        "exp": exp,
        "iss": issuer,
        "aud": audience,
        "typ": typ,
        "sid": sid,
    }


def service_claims(
    *, client_id: str, iat: int, exp: int, issuer: str, audience: str
) -> dict[str, Any]:
    return {
        "sub": f"service:{client_id}",
        "username": client_id,
        "roles": ["service"],
        "jti": new_id(),
        "iat": iat,
        "exp": exp,
        "iss": issuer,
        "aud": audience,
        "typ": "service",
    }


def totp_timestep(secret: str, code: str, now: float) -> int | None:
    """The time step ``code`` belongs to (within ±1 step of ``now``), or None.

    The step, not just a yes/no, is what makes replay detection possible: a used
    ``<user>:<step>`` is recorded and never accepted again."""
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP)
    current = int(now // TOTP_STEP)
    for offset in (0, -1, 1):
        step = current + offset
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def lockout_seconds(recent_lockouts: int, base: int, maximum: int) -> int:
    """Doubling lockout: base, 2*base, 4*base ... capped at ``maximum``."""
    return int(min(maximum, base * (2 ** min(recent_lockouts, 20))))


class SecretBox:
    """Encrypts TOTP secrets at rest (Fernet: AES-128-CBC + HMAC-SHA256)."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode("ascii")

    def open(self, sealed: str) -> str | None:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, ValueError):
            return None
