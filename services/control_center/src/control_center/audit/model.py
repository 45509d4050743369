"""Audit records ``{id, timestamp, user_id, action, resource, result, details}``.

``details`` is a free-form map, stored as JSON text so that keys with ``.`` or a
leading ``$`` never reach MongoDB; secrets are dropped before anything is stored."""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from provisioning_common.timeutil import utcnow

SECRET_MARKERS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "mfa_code",
    "code",
    "otp",
    "hash",
    "authorization",
    "cookie",
    "credential",
    "api_key",
    "apikey",
    "private_key",
    "privatekey",
    "ssh_key",
)
# values that are secrets whatever their key is called: a JWT, a bearer/basic
# credential, a PEM private key
SECRET_VALUE = re.compile(
    r"^(?:eyJ[\w-]+\.[\w-]+\.[\w-]*|(?:bearer|basic)\s+\S+)$|-----BEGIN [A-Z ]*PRIVATE KEY-----",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def scrub(details: Any) -> Any:
    """Replace the value of any key that looks like a secret, and any value that is
    recognisably a credential."""
    if isinstance(details, dict):
        return {
            str(k): REDACTED if any(m in str(k).lower() for m in SECRET_MARKERS) else scrub(v)
            for k, v in details.items()
        }
    if isinstance(details, list):
        return [scrub(v) for v in details]
    if isinstance(details, str) and SECRET_VALUE.search(details.strip()):
        return REDACTED
    if isinstance(details, float) and not math.isfinite(details):
        return str(details)  # NaN/Infinity are not JSON: the chain hashes canonical JSON
    return details


@dataclass(frozen=True)
class AuditRecord:
    action: str
    resource: str
    result: str
    user_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=utcnow)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "timestamp": self.timestamp,
            "user_id": self.user_id,
            "action": self.action,
            "resource": self.resource,
            "result": self.result,
            "details_json": json.dumps(scrub(self.details), default=str),
        }


def from_document(doc: dict[str, Any]) -> dict[str, Any]:
    try:
        details = json.loads(doc.get("details_json") or "{}")
    except ValueError:
        details = {}
    return {
        "id": doc["_id"],
        "timestamp": doc["timestamp"],
        "user_id": doc.get("user_id"),
        "action": doc.get("action"),
        "resource": doc.get("resource"),
        "result": doc.get("result"),
        "details": details,
    }
