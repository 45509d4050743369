"""Query parameters and views of ``/webhooks/deliveries``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from marshmallow import Schema, fields, validate

from provisioning_common.pagination import PageQuery

from .config import WEBHOOK_EVENTS
from .model import DeliveryStatus

DELIVERY_STATUSES = tuple(DeliveryStatus)


class DeliveryQuery(PageQuery):
    event = fields.String(validate=validate.OneOf(sorted(WEBHOOK_EVENTS)))
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES))
    endpoint_id = fields.String(validate=validate.Length(min=1, max=64))
    event_id = fields.String(validate=validate.Length(min=1, max=128))


class DeliveryAttemptView(Schema):
    attempt = fields.Integer(required=True)
    status = fields.String(required=True)
    started_at = fields.DateTime(required=True)
    ended_at = fields.DateTime(allow_none=True)
    duration_ms = fields.Float(allow_none=True)
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)


class DeliveryView(Schema):
    id = fields.String(required=True)
    event = fields.String(required=True)
    event_id = fields.String(required=True)
    endpoint_id = fields.String(required=True)
    url = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(DELIVERY_STATUSES))
    attempts = fields.Integer(required=True)
    max_attempts = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    next_attempt_at = fields.DateTime(allow_none=True)
    delivered_at = fields.DateTime(allow_none=True)
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    attempt_log = fields.List(fields.Nested(DeliveryAttemptView), required=True)


def delivery_query(params: Mapping[str, Any]) -> dict[str, Any]:
    """The MongoDB filter of validated query parameters (fixed field names only)."""
    return {k: params[k] for k in ("event", "status", "endpoint_id", "event_id") if k in params}


def delivery_view(doc: Mapping[str, Any], attempts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    status = doc.get("status")
    return {
        "id": doc["_id"],
        "event": doc.get("event") or doc.get("kind"),
        "event_id": doc.get("event_id"),
        "endpoint_id": doc.get("endpoint_id"),
        "url": doc.get("url"),
        "status": status,
        "attempts": int(doc.get("attempts") or 0),
        "max_attempts": int(doc.get("max_attempts") or 0),
        "created_at": doc.get("created_at"),
        "updated_at": doc.get("updated_at"),
        "next_attempt_at": doc.get("next_attempt_at") if status == DeliveryStatus.PENDING else None,
        "delivered_at": doc.get("delivered_at"),
        "last_status_code": doc.get("last_status_code"),
        "last_error": doc.get("last_error"),
        "attempt_log": [
            {
                "attempt": int(a.get("attempt") or 0),
                "status": a.get("status"),
                "started_at": a.get("started_at"),
                "ended_at": a.get("ended_at"),
                "duration_ms": a.get("duration_ms"),
                "status_code": a.get("status_code"),
                "error": a.get("error"),
            }
            for a in attempts
            if "attempt" in a  # skip takeover markers
        ],
    }
