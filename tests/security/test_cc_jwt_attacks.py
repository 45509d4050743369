"""JWT attacks against the control center (as a process), each one rejected.

The service runs with a signing key from the environment (the mounted-secret path),
so the test can forge tokens that carry a *valid* signature but bad claims."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

from control_center.keys.model import generate_private_pem, material_from_pem
from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    auth_header,
    login,
    service_token,
    start_control_center,
)
from tests.support.processes import ServiceProcess

T = 10
ISS, AUD = "provisioning-control-center", "provisioning"
SERVER_PEM = generate_private_pem()
SERVER_KID = material_from_pem(SERVER_PEM).kid


@pytest.fixture(scope="module")
def cc(stack: Any) -> Iterator[ServiceProcess]:
    proc = start_control_center(stack.env(), JWT_PRIVATE_KEY=SERVER_PEM)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def admin(cc: ServiceProcess) -> dict[str, Any]:
    return login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seg(obj: dict[str, Any]) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def claims(admin: dict[str, Any], **over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": admin["user"]["id"],
        "username": "admin",
        "roles": ["admin"],
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 300,
        "iss": ISS,
        "aud": AUD,
        "typ": "access",
        "sid": "x",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], pem: str = SERVER_PEM, **headers: Any) -> str:
    hdr = {"kid": SERVER_KID, **headers}
    token: str = jwt.encode(payload, pem, algorithm="RS256", headers=hdr)
    return token


def hs256(payload: dict[str, Any], secret: bytes) -> str:
    signing = f"{seg({'alg': 'HS256', 'typ': 'JWT', 'kid': SERVER_KID})}.{seg(payload)}"
    mac = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64(mac)}"


def assert_rejected(cc: ServiceProcess, token: str) -> None:
    resp = requests.get(f"{cc.url}/auth/me", headers=auth_header(token), timeout=T)
    assert resp.status_code == 401, resp.text
    body = resp.json()
    assert body["success"] is False
    assert "Traceback" not in resp.text
    svc = service_token(cc.url)
    intro = requests.post(
        f"{cc.url}/auth/introspect", json={"token": token}, headers=auth_header(svc), timeout=T
    )
    assert intro.json()["data"] == {"active": False}


def test_a_real_session_token_is_accepted(cc: ServiceProcess, admin: dict[str, Any]) -> None:
    resp = requests.get(f"{cc.url}/auth/me", headers=auth_header(admin["token"]), timeout=T)
    assert resp.status_code == 200
    assert jwt.get_unverified_header(admin["token"])["kid"] == SERVER_KID
    keys = requests.get(f"{cc.url}/.well-known/jwks.json", timeout=T).json()["keys"]
    assert [k["kid"] for k in keys] == [SERVER_KID]


def test_alg_none(cc: ServiceProcess, admin: dict[str, Any]) -> None:
    for alg in ("none", "None", "NONE"):
        token = f"{seg({'alg': alg, 'typ': 'JWT', 'kid': SERVER_KID})}.{seg(claims(admin))}."
        assert_rejected(cc, token)


def test_hs256_with_public_key_as_secret(cc: ServiceProcess, admin: dict[str, Any]) -> None:
    public = serialization.load_pem_private_key(SERVER_PEM.encode(), None).public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pkcs1 = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    for secret in (pem, der, pkcs1):
        assert_rejected(cc, hs256(claims(admin), secret))


def test_stripped_signature(cc: ServiceProcess, admin: dict[str, Any]) -> None:
    head, payload, _ = admin["token"].split(".")
    assert_rejected(cc, f"{head}.{payload}.")
    assert_rejected(cc, f"{head}.{payload}")


def test_tampered_payload(cc: ServiceProcess, admin: dict[str, Any]) -> None:
    viewer = claims(admin, roles=["viewer"])
    token = sign(viewer)
    head, _, sig = token.split(".")
    forged = f"{head}.{seg({**viewer, 'roles': ['admin']})}.{sig}"
    assert_rejected(cc, forged)


def test_unknown_kid_and_foreign_key(cc: ServiceProcess, admin: dict[str, Any]) -> None:
    attacker = generate_private_pem()
    assert_rejected(cc, sign(claims(admin), attacker, kid="attacker-key"))
    # our kid, someone else's key
    assert_rejected(cc, sign(claims(admin), attacker))


def test_jku_x5u_jwk_headers_are_ignored(cc: ServiceProcess, admin: dict[str, Any]) -> None:
    attacker_pem = generate_private_pem()
    attacker = material_from_pem(attacker_pem)
    for extra in (
        {"jku": "http://127.0.0.1:1/jwks.json"},
        {"x5u": "http://127.0.0.1:1/cert.pem"},
        {"jwk": attacker.public_jwk},
    ):
        assert_rejected(cc, sign(claims(admin), attacker_pem, kid=attacker.kid, **extra))
        assert_rejected(cc, sign(claims(admin), attacker_pem, **extra))


def test_expired_and_not_yet_valid(cc: ServiceProcess, admin: dict[str, Any]) -> None:
    now = int(time.time())
    assert_rejected(cc, sign(claims(admin, iat=now - 600, exp=now - 300)))
    assert_rejected(cc, sign(claims(admin, nbf=now + 600)))


@pytest.mark.parametrize("missing", ["exp", "iat", "iss", "aud", "jti", "sub", "typ"])
def test_missing_required_claims(cc: ServiceProcess, admin: dict[str, Any], missing: str) -> None:
    payload = claims(admin)
    payload.pop(missing)
    assert_rejected(cc, sign(payload))


def test_wrong_audience_and_issuer(cc: ServiceProcess, admin: dict[str, Any]) -> None:
    assert_rejected(cc, sign(claims(admin, aud="someone-else")))
    assert_rejected(cc, sign(claims(admin, iss="https://evil.example")))


def test_forged_but_validly_signed_token_without_session_is_rejected(
    cc: ServiceProcess, admin: dict[str, Any]
) -> None:
    # correct signature and claims, but no session behind it: not active
    assert_rejected(cc, sign(claims(admin, sid="no-such-session")))


def test_refresh_and_service_tokens_are_not_access_tokens(
    cc: ServiceProcess, admin: dict[str, Any]
) -> None:
    fresh = login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)
    for token in (fresh["refresh_token"], service_token(cc.url)):
        resp = requests.get(f"{cc.url}/auth/me", headers=auth_header(token), timeout=T)
        assert resp.status_code == 401
        resp = requests.get(f"{cc.url}/users", headers=auth_header(token), timeout=T)
        assert resp.status_code == 401
        resp = requests.post(f"{cc.url}/auth/logout", headers=auth_header(token), timeout=T)
        assert resp.status_code == 401
    # and a user's access token cannot call service-only endpoints
    resp = requests.post(
        f"{cc.url}/auth/introspect",
        json={"token": fresh["token"]},
        headers=auth_header(fresh["token"]),
        timeout=T,
    )
    assert resp.status_code == 401


def test_garbage_tokens(cc: ServiceProcess) -> None:
    for token in ("x", "a.b.c", "....", "e30.e30.e30", "Bearer", "%00"):
        resp = requests.get(f"{cc.url}/auth/me", headers=auth_header(token), timeout=T)
        assert resp.status_code == 401
    resp = requests.get(
        f"{cc.url}/auth/me", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}, timeout=T
    )
    assert resp.status_code == 401


def test_weak_rsa_key_is_refused_at_startup() -> None:
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    weak = weak_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(ValueError, match="bits"):
        material_from_pem(weak)
