"""``client.auth``: login, tokens, MFA, service tokens, introspection, signing keys."""

from __future__ import annotations

from typing import Any

from .._convert import from_dict
from ..models import Introspection, MfaEnrollment, ServiceToken, Session, User
from ._base import Resource


class AuthAPI(Resource):
    async def login(self, username: str, password: str, mfa_code: str | None = None) -> Session:
        """``POST /auth/login``; raises :class:`MfaRequiredError` when a code is needed."""
        body: dict[str, Any] = {"username": username, "password": password}
        if mfa_code:
            body["mfa_code"] = mfa_code
        reply = await self._transport.request(
            "control_center", "POST", "/auth/login", auth=False, body=body, is_login=True
        )
        self._transport.tokens.clear()
        return self._transport.adopt(from_dict(Session, reply.data))

    async def refresh(self) -> Session:
        """``POST /auth/refresh`` with the refresh token (rotated) or the access token."""
        return await self._transport.refresh()

    async def logout(self) -> str:
        data = await self._transport.data("control_center", "POST", "/auth/logout")
        self._transport.tokens.clear()
        return str(data)

    async def me(self) -> User:
        return from_dict(User, await self._transport.data("control_center", "GET", "/auth/me"))

    async def mfa_enroll(self, password: str) -> MfaEnrollment:
        data = await self._transport.data(
            "control_center", "POST", "/auth/mfa/enroll", body={"password": password}
        )
        enrollment = from_dict(MfaEnrollment, data)
        for key in ("otpauth_url", "uri", "provisioning_uri"):
            if not enrollment.otpauth_uri and key in enrollment.extra:
                enrollment.otpauth_uri = str(enrollment.extra[key])
        return enrollment

    async def mfa_verify(self, code: str) -> Any:
        return await self._transport.data(
            "control_center", "POST", "/auth/mfa/verify", body={"code": code}
        )

    async def service_token(self, client_id: str, client_secret: str) -> ServiceToken:
        """Client-credentials grant (``POST /auth/token``) for service accounts."""
        body = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        }
        data = await self._transport.data(
            "control_center", "POST", "/auth/token", auth=False, body=body
        )
        return from_dict(ServiceToken, data)

    async def introspect(self, token: str) -> Introspection:
        """``POST /auth/introspect`` (the client must hold a service token)."""
        data = await self._transport.data(
            "control_center", "POST", "/auth/introspect", body={"token": token}
        )
        return from_dict(Introspection, data)

    async def rotate_signing_key(self) -> Any:
        """``POST /keys/rotate`` (admin): new signing key, old tokens stay valid."""
        return await self._transport.data("control_center", "POST", "/keys/rotate")

    async def jwks(self) -> dict[str, Any]:
        reply = await self._transport.request(
            "control_center", "GET", "/.well-known/jwks.json", auth=False, envelope=False
        )
        return dict(reply.data)
