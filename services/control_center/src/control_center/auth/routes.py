"""``/auth/*`` handlers: parse, call the use case, answer in the envelope."""

from __future__ import annotations

from aiohttp import web

from provisioning_common.envelope import ok
from provisioning_common.errors import Unauthorized
from provisioning_common.openapi import api_doc
from provisioning_common.validation import load_body
from provisioning_common.webapp import client_ip, enforce_rate_limit

from ..deps import container_of
from ..users.schemas import UserOut
from . import schemas
from .guard import authenticate
from .login import LoginAttempt

routes = web.RouteTableDef()


async def _auth_tier(request: web.Request) -> None:
    """The contract's authentication limit: per client IP."""
    limits = container_of(request).settings.common.rate_limits
    await enforce_rate_limit(request, "auth", client_ip(request), limits.auth_per_minute)


@routes.post("/auth/login")
@api_doc(
    summary="Log in (password and, when enrolled, a TOTP code)",
    tags=["auth"],
    body=schemas.LoginIn,
    response=schemas.LoginOut,
    auth=False,
    responses={
        401: "Invalid credentials, MFA required or invalid",
        429: "Rate limit exceeded or account temporarily locked",
        503: "Rate limiter (Redis) unavailable",
    },
)
async def login(request: web.Request) -> web.Response:
    await _auth_tier(request)
    body = await load_body(request, schemas.LoginIn())
    attempt = LoginAttempt(
        body["username"], body["password"], body.get("mfa_code") or None, client_ip(request)
    )
    return ok(await container_of(request).login.login(attempt))


@routes.post("/auth/refresh")
@api_doc(
    summary="Renew the access token (access or refresh token presented)",
    tags=["auth"],
    body=schemas.RefreshIn,
    response=schemas.RefreshOut,
    auth=False,
    responses={401: "Token invalid, expired, revoked or already used"},
)
async def refresh(request: web.Request) -> web.Response:
    await _auth_tier(request)
    body = await load_body(request, schemas.RefreshIn())
    return ok(await container_of(request).tokens.refresh(body["token"], client_ip(request)))


@routes.post("/auth/logout")
@api_doc(summary="Log out: revoke the access token and its session", tags=["auth"])
async def logout(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    await container_of(request).tokens.logout(principal.claims, client_ip(request))
    return ok("Successfully logged out")


@routes.post("/auth/token")
@api_doc(
    summary="Service token (client-credentials grant)",
    tags=["auth"],
    body=schemas.TokenIn,
    response=schemas.TokenOut,
    auth=False,
    responses={401: "Invalid client credentials"},
)
async def token(request: web.Request) -> web.Response:
    await _auth_tier(request)
    body = await load_body(request, schemas.TokenIn())
    tokens = container_of(request).tokens
    return ok(await tokens.service_token(body["client_id"], body["client_secret"]))


@routes.post("/auth/introspect")
@api_doc(
    summary="Is this token active? (service tokens only)",
    tags=["auth"],
    body=schemas.IntrospectIn,
    response=schemas.IntrospectOut,
    responses={403: "Caller is not a service"},
)
async def introspect(request: web.Request) -> web.Response:
    await authenticate(request, allow=("service",))
    body = await load_body(request, schemas.IntrospectIn())
    return ok(await container_of(request).verifier.introspect(body["token"]))


@routes.get("/auth/me")
@api_doc(summary="The authenticated user", tags=["auth"], response=UserOut)
async def me(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    assert principal.user is not None
    return ok(UserOut().dump(principal.user))


@routes.post("/auth/mfa/enroll")
@api_doc(
    summary="Start TOTP enrolment (re-checks the password)",
    tags=["auth"],
    body=schemas.MfaEnrollIn,
    response=schemas.MfaEnrollOut,
    responses={401: "Wrong password", 409: "MFA already enabled"},
)
async def mfa_enroll(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    await _auth_tier(request)
    body = await load_body(request, schemas.MfaEnrollIn())
    if principal.user is None:
        raise Unauthorized()
    mfa = container_of(request).mfa
    return ok(await mfa.enroll(principal.user, body["password"], client_ip(request)))


@routes.post("/auth/mfa/verify")
@api_doc(
    summary="Activate TOTP with a first code",
    tags=["auth"],
    body=schemas.MfaVerifyIn,
    responses={401: "Invalid MFA code", 422: "No enrolment in progress"},
)
async def mfa_verify(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    await _auth_tier(request)
    body = await load_body(request, schemas.MfaVerifyIn())
    if principal.user is None:
        raise Unauthorized()
    await container_of(request).mfa.verify(principal.user, body["code"])
    return ok("MFA enabled")
