"""Who a verified token belongs to, and whether a revocation event covers it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    username: str
    roles: tuple[str, ...]
    jti: str
    iat: int
    exp: int
    typ: str

    @property
    def user_context(self) -> dict[str, Any]:
        return {"id": self.sub, "username": self.username, "roles": list(self.roles)}


def revokes(payload: Mapping[str, Any], principal: Principal) -> bool:
    """Whether a revocation event covers ``principal``'s token (its ``jti``, or every
    token of its user issued before ``revoked_before``)."""
    if payload.get("jti") == principal.jti:
        return True
    if payload.get("sub") != principal.sub:
        return False
    before = payload.get("revoked_before")
    return not isinstance(before, int | float) or principal.iat < before
