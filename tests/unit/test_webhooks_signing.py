"""Webhook signatures: the documented bytes, verification, tampering, replay window."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from provisioning_common.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookVerificationError,
    build_signed_delivery,
    compute_signature,
    serialize_unsigned,
    verify_payload_signature,
    verify_request,
    verify_signature,
)

SECRET = "webhook-secret"
TS = 1_760_000_000


def _delivery() -> tuple[bytes, dict[str, str]]:
    unsigned = serialize_unsigned(
        "task.completed",
        "2025-09-26T10:00:00Z",
        {"task_id": "t-1", "status": "completed", "output": "héllo"},
    )
    signed = build_signed_delivery(
        SECRET, event="task.completed", delivery_id="d-1", unsigned_body=unsigned, timestamp=TS
    )
    return signed.body, signed.headers


def test_signature_is_hmac_over_timestamp_dot_body() -> None:
    body, headers = _delivery()
    expected = hmac.new(SECRET.encode(), f"{TS}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={expected}"
    assert headers[TIMESTAMP_HEADER] == str(TS)
    assert headers[EVENT_HEADER] == "task.completed"
    assert headers[DELIVERY_HEADER] == "d-1"
    assert headers["Content-Type"] == "application/json"


def test_body_is_the_contract_payload_with_inner_signature() -> None:
    body, _ = _delivery()
    payload = json.loads(body)
    assert list(payload) == ["event", "timestamp", "data", "signature"]
    assert payload["event"] == "task.completed"
    assert payload["data"]["output"] == "héllo"
    unsigned = body[: body.rindex(b',"signature"')] + b"}"
    inner = hmac.new(SECRET.encode(), f"{TS}.".encode() + unsigned, hashlib.sha256).hexdigest()
    assert payload["signature"] == f"sha256={inner}"


def test_verify_request_accepts_authentic_delivery() -> None:
    body, headers = _delivery()
    verify_request(SECRET, body, headers, now=TS + 10)
    verify_payload_signature(SECRET, body, TS, now=TS + 10)


def test_wrong_secret_fails() -> None:
    body, headers = _delivery()
    with pytest.raises(WebhookVerificationError):
        verify_request("another-secret", body, headers, now=TS)
    with pytest.raises(WebhookVerificationError):
        verify_payload_signature("another-secret", body, TS, now=TS)


def test_tampered_body_fails() -> None:
    body, headers = _delivery()
    tampered = body.replace(b"t-1", b"t-2")
    with pytest.raises(WebhookVerificationError):
        verify_request(SECRET, tampered, headers, now=TS)
    with pytest.raises(WebhookVerificationError):
        verify_payload_signature(SECRET, tampered, TS, now=TS)


def test_timestamp_tolerance() -> None:
    body, headers = _delivery()
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_request(SECRET, body, headers, now=TS + 301)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_request(SECRET, body, headers, now=TS - 301)
    verify_request(SECRET, body, headers, now=TS + 1000, tolerance=-1)  # check disabled
    # The timestamp is signed: moving it invalidates the signature.
    moved = {**headers, TIMESTAMP_HEADER: str(TS + 5)}
    with pytest.raises(WebhookVerificationError, match="mismatch"):
        verify_request(SECRET, body, moved, now=TS)


def test_missing_or_malformed_headers() -> None:
    body, headers = _delivery()
    with pytest.raises(WebhookVerificationError):
        verify_request(SECRET, body, {}, now=TS)
    with pytest.raises(WebhookVerificationError):
        verify_signature(SECRET, body, "not-a-number", headers[SIGNATURE_HEADER], now=TS)
    with pytest.raises(WebhookVerificationError):
        verify_signature(SECRET, body, TS, "sha256=00", now=TS)


def test_compute_signature_accepts_bytes_secret() -> None:
    assert compute_signature(SECRET.encode(), TS, b"{}") == compute_signature(SECRET, TS, b"{}")
