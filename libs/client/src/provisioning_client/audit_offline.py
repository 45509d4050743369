"""Offline verification of an audit export (``GET /audit/export``, NDJSON) against
the control center's public keys (``/.well-known/jwks.json``): :func:`verify_export`,
used by ``provctl audit verify FILE``. The chain's rules are
:mod:`provisioning_client.audit_chain`'s; checkpoint signatures are checked with the
JWKS key named by ``kid`` (``cryptography``)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .audit_chain import ChainError, ChainVerifier, SignatureCheck, checkpoint_message

# How many records may follow the newest verifiable checkpoint before the verifier
# says checkpoints were removed: twice the service's default signing interval
# (AUDIT_CHECKPOINT_RECORDS, 1000).
DEFAULT_MAX_UNSIGNED = 2000


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64url_int(text: str) -> int:
    return int.from_bytes(_b64url_decode(text), "big")


@dataclass(frozen=True, slots=True)
class RsaPublicKey:
    """An RS256 verification key of a JWKS (``n``, ``e``), checked by ``cryptography``."""

    key: rsa.RSAPublicKey

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> RsaPublicKey:
        n, e = _b64url_int(str(jwk["n"])), _b64url_int(str(jwk["e"]))
        return cls(rsa.RSAPublicNumbers(e, n).public_key())

    def verify(self, message: bytes, signature: bytes) -> bool:
        """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2.2)."""
        try:
            self.key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True


def keys_from_jwks(jwks: Mapping[str, Any]) -> dict[str, RsaPublicKey]:
    """The RS256 signing keys of a JWKS document, by ``kid``."""
    keys: dict[str, RsaPublicKey] = {}
    for jwk in jwks.get("keys") or []:
        if not isinstance(jwk, Mapping) or jwk.get("kty") != "RSA" or "kid" not in jwk:
            continue
        if jwk.get("alg", "RS256") != "RS256" or jwk.get("use", "sig") != "sig":
            continue
        try:
            keys[str(jwk["kid"])] = RsaPublicKey.from_jwk(jwk)
        except (KeyError, ValueError, binascii.Error):
            continue
    return keys


def signature_checker(keys: Mapping[str, RsaPublicKey]) -> SignatureCheck:
    """A :data:`SignatureCheck` over these keys (None for a ``kid`` not among them)."""

    def check(cp: Mapping[str, Any]) -> bool | None:
        key = keys.get(str(cp.get("kid")))
        if key is None:
            return None
        try:
            message = checkpoint_message(
                int(cp["seq"]), str(cp["hash"]), str(cp["signed_at"]), str(cp["kid"])
            )
            signature = _b64url_decode(str(cp["signature"]))
        except (KeyError, TypeError, ValueError, binascii.Error):
            return False
        return key.verify(message, signature)

    return check


@dataclass(slots=True)
class AuditVerification:
    """The answer of ``GET /audit/verify`` (and of :func:`verify_export`)."""

    valid: bool = False
    checked: int = 0
    from_seq: int = 1
    last_seq: int | None = None
    last_hash: str | None = None
    checkpoints: int = 0
    unverified_checkpoints: int = 0
    signed_through: int | None = None
    first_error: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_RECORD_LINE = re.compile(
    rb'\{"type":"record","seq":([1-9][0-9]{0,17}),"prev_hash":"([0-9a-f]{64})",'
    rb'"hash":"([0-9a-f]{64})","record":(.*)\}\r?\n?\Z',
    re.DOTALL,
)


def verify_export(
    lines: Iterable[str | bytes],
    jwks: Mapping[str, Any] | None,
    *,
    require_signed: bool = True,
    max_unsigned: int | None = DEFAULT_MAX_UNSIGNED,
) -> dict[str, Any]:
    """Check an NDJSON export (``head``, ``checkpoint`` and ``record`` lines, records
    in ``seq`` order, checkpoints before them as the control center writes them).

    With ``require_signed`` (the default) an export whose checkpoints none verify
    with ``jwks`` is reported invalid: without a signature nothing proves the tail
    is complete. The report has the shape of ``GET /audit/verify``."""
    keys = keys_from_jwks(jwks or {})
    verifier = ChainVerifier(signature_checker(keys))
    head_seq: int | None = None
    loads = json.JSONDecoder().decode  # str in: no encoding detection per line
    fast = _RECORD_LINE.match
    for number, raw in enumerate(lines, 1):
        data = raw if isinstance(raw, bytes) else raw.encode()
        line = fast(data)
        if line is not None:
            # the layout the control center writes: the record's canonical bytes are
            # hashed as they are (the hash proves they are what it stored)
            seq, prev_hash, digest, body = line.groups()
            if body == b"null":
                verifier.absent(int(seq), "the export names a record that is gone")
            else:
                verifier.record_bytes(int(seq), prev_hash.decode(), digest.decode(), body)
            if verifier.failed:
                break
            continue
        try:
            text = data.decode()
            if not text.strip():
                continue
            item = loads(text)
            kind = item["type"]
            if kind == "record":
                record = item["record"]
                seq = item["seq"]
                if record is None:
                    verifier.absent(seq, "the export names a record that is gone")
                else:
                    verifier.record(seq, item["prev_hash"], item["hash"], record)
            elif kind == "checkpoint":
                verifier.checkpoint(item)
            elif kind == "head":
                head_seq = int(item.get("seq") or 0)
        except (ValueError, KeyError, TypeError) as exc:
            verifier.absent(verifier.expected, f"line {number} is not valid: {exc}")
        if verifier.failed:
            break
    verifier.finish(head_seq, max_unsigned if require_signed else None)
    report = verifier.report()
    signed = report["checkpoints"] - report["unverified_checkpoints"]
    if report["valid"] and require_signed and verifier.checked and signed == 0:
        report["valid"] = False
        report["first_error"] = ChainError(
            verifier.from_seq, "modified", "no checkpoint verifies with the key set"
        ).as_dict()
    return report
