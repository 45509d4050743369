"""Webhook signatures: how the orchestrator signs a delivery and how a receiver
checks one (see ``docs/webhooks.md``).

Signed bytes, for a delivery attempt made at Unix time ``T`` (decimal seconds, as
sent in ``X-Provisioning-Timestamp``)::

    X-Provisioning-Signature: sha256=hex(HMAC-SHA256(secret, T + "." + body))

where ``body`` is the exact request body bytes. The contract's in-body
``"signature"`` member carries ``sha256=hex(HMAC-SHA256(secret, T + "." + U))``
with ``U`` the body before that member was appended: the body is ``U`` with its
final ``}`` replaced by ``,"signature":"sha256=<64 hex>"}``.

A receiver needs only :func:`verify_request` (or :func:`verify_signature`)::

    from provisioning_common.webhooks import verify_request, WebhookVerificationError
    try:
        verify_request(secret, raw_body, request.headers)
    except WebhookVerificationError:
        return 401
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SignedDelivery",
    "WebhookVerificationError",
    "build_signed_delivery",
    "compute_signature",
    "serialize_unsigned",
    "verify_payload_signature",
    "verify_request",
    "verify_signature",
]

EVENT_HEADER = "X-Provisioning-Event"
DELIVERY_HEADER = "X-Provisioning-Delivery"
TIMESTAMP_HEADER = "X-Provisioning-Timestamp"
SIGNATURE_HEADER = "X-Provisioning-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
_PREFIX = "sha256="
_BODY_SIGNATURE = re.compile(rb',"signature":"sha256=([0-9a-f]{64})"\}\Z')


class WebhookVerificationError(Exception):
    """The delivery is not authentic (bad or missing signature, stale timestamp)."""


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def compute_signature(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``<timestamp>.<body>``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return _PREFIX + hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def serialize_unsigned(event: str, timestamp: str, data: Mapping[str, Any]) -> bytes:
    """The payload without its signature: compact UTF-8 JSON, keys in this order."""
    payload = {"event": event, "timestamp": timestamp, "data": dict(data)}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()


@dataclass(frozen=True, slots=True)
class SignedDelivery:
    body: bytes
    headers: dict[str, str]


def build_signed_delivery(
    secret: str | bytes,
    *,
    event: str,
    delivery_id: str,
    unsigned_body: bytes,
    timestamp: int | None = None,
) -> SignedDelivery:
    """The exact body and headers of one attempt (signed at ``timestamp``, now by default)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    if not unsigned_body.endswith(b"}"):
        raise ValueError("unsigned body must be a JSON object")
    inner = compute_signature(secret, ts, unsigned_body)
    body = unsigned_body[:-1] + b',"signature":"' + inner.encode("ascii") + b'"}'
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: compute_signature(secret, ts, body),
    }
    return SignedDelivery(body=body, headers=headers)


def _check_timestamp(timestamp: str | int, tolerance: int, now: float | None) -> int:
    try:
        ts = int(str(timestamp).strip())
    except ValueError as exc:
        raise WebhookVerificationError("invalid timestamp") from exc
    current = time.time() if now is None else now
    if tolerance >= 0 and abs(current - ts) > tolerance:
        raise WebhookVerificationError("timestamp outside the tolerance window")
    return ts


def verify_signature(
    secret: str | bytes,
    body: bytes,
    timestamp: str | int,
    signature: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise :class:`WebhookVerificationError` unless ``signature`` (the header
    value) is the HMAC of ``<timestamp>.<body>`` and ``timestamp`` is within
    ``tolerance`` seconds of now (a negative tolerance disables the age check)."""
    ts = _check_timestamp(timestamp, tolerance, now)
    expected = compute_signature(secret, ts, body)
    # Compare as bytes of equal meaning; compare_digest keeps the time constant.
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise WebhookVerificationError("signature mismatch")


def verify_payload_signature(
    secret: str | bytes,
    body: bytes,
    timestamp: str | int,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Check the contract's in-body ``signature`` member (see the module docstring)."""
    ts = _check_timestamp(timestamp, tolerance, now)
    match = _BODY_SIGNATURE.search(body)
    if match is None:
        raise WebhookVerificationError("no signature member at the end of the body")
    unsigned = body[: match.start()] + b"}"
    expected = compute_signature(secret, ts, unsigned)
    if not hmac.compare_digest(expected.encode(), _PREFIX.encode() + match.group(1)):
        raise WebhookVerificationError("payload signature mismatch")


def verify_request(
    secret: str | bytes,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Verify a received delivery from its raw body and headers (case-insensitive
    mappings such as aiohttp's or requests' work; a plain dict needs exact names)."""
    timestamp = headers.get(TIMESTAMP_HEADER)
    signature = headers.get(SIGNATURE_HEADER)
    if not timestamp or not signature:
        raise WebhookVerificationError("missing signature headers")
    verify_signature(secret, body, timestamp, signature, tolerance=tolerance, now=now)
