"""Signing keys: RSA key pairs identified by their RFC 7638 thumbprint (``kid``)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from provisioning_common.tokens import ALGORITHM

KEY_BITS = 2048


class KeyStore(Protocol):
    """The stored key generations (``signing_keys``), as the key ring reads and claims
    them; the keys slice's repository is one."""

    async def recent(self, count: int) -> list[dict[str, Any]]: ...

    async def claim_generation(self, generation: int, kid: str, private_pem: str) -> bool: ...


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class KeyMaterial:
    kid: str
    public_jwk: dict[str, str]
    public_pem: str
    private_pem: str | None  # None: verification only (a retired key from config)

    def jwks_entry(self) -> dict[str, str]:
        return dict(self.public_jwk)


def generate_private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def material_from_pem(pem: str) -> KeyMaterial:
    """Key material from a private (signing) or public (verify-only) RSA PEM."""
    data = pem.encode("ascii")
    private_pem: str | None = None
    public: Any
    if b"PRIVATE KEY" in data:
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, rsa.RSAPrivateKey):
            raise ValueError("signing key must be an RSA key")
        if private.key_size < KEY_BITS:
            raise ValueError(f"signing key must have at least {KEY_BITS} bits")
        public = private.public_key()
        private_pem = pem
    else:
        public = serialization.load_pem_public_key(data)
        if not isinstance(public, rsa.RSAPublicKey):
            raise ValueError("verification key must be an RSA key")
    numbers = public.public_numbers()
    e, n = _b64url_uint(numbers.e), _b64url_uint(numbers.n)
    # RFC 7638: SHA-256 over the required members in lexicographic order, no spaces
    canonical = json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"), sort_keys=True)
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=")
    public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
    jwk = {"kty": "RSA", "kid": kid.decode("ascii"), "use": "sig", "alg": ALGORITHM, "n": n, "e": e}
    return KeyMaterial(jwk["kid"], jwk, public_pem, private_pem)
