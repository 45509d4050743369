"""Strict JWT verification (DESIGN §4): one algorithm, required claims, typ checked."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

from provisioning_common.tokens import (
    TokenError,
    UnknownKeyError,
    bearer_token,
    decode_token,
)

ISS, AUD = "provisioning-control-center", "provisioning"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE_PEM = _KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
PUBLIC_PEM = (
    _KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
PUBLIC_DER = _KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
KEYS = {"k1": PUBLIC_PEM}


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "user-1",
        "username": "alice",
        "roles": ["operator"],
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 300,
        "iss": ISS,
        "aud": AUD,
        "typ": "access",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], kid: str = "k1", **headers: Any) -> str:
    return jwt.encode(payload, PRIVATE_PEM, algorithm="RS256", headers={"kid": kid, **headers})


def decode(token: str, typ: str = "access") -> Any:
    return decode_token(token, KEYS, issuer=ISS, audience=AUD, expected_typ=typ)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_valid_token() -> None:
    result = decode(sign(claims()))
    assert result.sub == "user-1"
    assert result.roles == ("operator",)
    assert result.typ == "access"


@pytest.mark.parametrize(
    "payload",
    [
        claims(exp=int(time.time()) - 10),
        claims(exp=None),
        claims(iat=None),
        claims(jti=None),
        claims(aud="someone-else"),
        claims(aud=None),
        claims(iss="evil"),
        claims(nbf=int(time.time()) + 600),
        claims(typ="refresh"),
        claims(typ="service"),
        claims(typ=None),
        claims(roles="admin"),
    ],
)
def test_claim_violations_rejected(payload: dict[str, Any]) -> None:
    with pytest.raises(TokenError):
        decode(sign(payload))


def test_alg_none_rejected() -> None:
    header = b64(json.dumps({"alg": "none", "kid": "k1", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    with pytest.raises(TokenError):
        decode(f"{header}.{body}.")


@pytest.mark.parametrize("secret", [PUBLIC_PEM.encode(), PUBLIC_DER])
def test_hs256_with_public_key_rejected(secret: bytes) -> None:
    import hashlib
    import hmac

    header = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    sig = b64(hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest())
    with pytest.raises(TokenError):
        decode(f"{header}.{body}.{sig}")


def test_stripped_signature_and_tampering_rejected() -> None:
    token = sign(claims())
    header, body, _ = token.split(".")
    with pytest.raises(TokenError):
        decode(f"{header}.{body}.")
    tampered = b64(json.dumps(claims(roles=["admin"])).encode())
    with pytest.raises(TokenError):
        decode(f"{header}.{tampered}.{token.split('.')[2]}")


def test_unknown_kid_asks_for_refresh_and_jku_is_ignored() -> None:
    with pytest.raises(UnknownKeyError):
        decode(sign(claims(), kid="other"))
    # A jku header pointing elsewhere changes nothing: the key still comes from KEYS.
    assert decode(sign(claims(), jku="https://attacker.example/jwks.json")).sub == "user-1"


def test_bearer_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None
