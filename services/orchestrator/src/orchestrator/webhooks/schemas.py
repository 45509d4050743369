"""Query parameters and the response schemas of ``/webhooks/deliveries``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, fields, post_dump, validate

from provisioning_common.fields import Timestamp
from provisioning_common.pagination import PageQuery

from .model import WEBHOOK_EVENTS, DeliveryStatus

DELIVERY_STATUSES = tuple(DeliveryStatus)


class DeliveryQuery(PageQuery):
    event = fields.String(validate=validate.OneOf(sorted(WEBHOOK_EVENTS)))
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES))
    endpoint_id = fields.String(validate=validate.Length(min=1, max=64))
    event_id = fields.String(validate=validate.Length(min=1, max=128))


class DeliveryAttemptView(Schema):
    """One attempt record of a delivery."""

    attempt = fields.Integer(required=True, dump_default=0)
    status = fields.String(required=True, dump_default=None)
    started_at = Timestamp(required=True, dump_default=None)
    ended_at = Timestamp(allow_none=True, dump_default=None)
    duration_ms = fields.Float(allow_none=True, dump_default=None)
    status_code = fields.Integer(allow_none=True, dump_default=None)
    error = fields.String(allow_none=True, dump_default=None)


class DeliveryView(Schema):
    """A delivery: its outbox item (``_id`` is the ``id``) with its attempt records
    under ``attempt_log`` (``WebhookService.delivery`` / ``deliveries`` compose it)."""

    id = fields.String(required=True, attribute="_id")
    event = fields.Method("_event", required=True, metadata={"type": "string"})
    event_id = fields.String(required=True, dump_default=None)
    endpoint_id = fields.String(required=True, dump_default=None)
    url = fields.String(required=True, dump_default=None)
    status = fields.String(
        required=True, dump_default=None, validate=validate.OneOf(DELIVERY_STATUSES)
    )
    attempts = fields.Integer(required=True, dump_default=0)
    max_attempts = fields.Integer(required=True, dump_default=0)
    created_at = Timestamp(required=True, dump_default=None)
    updated_at = Timestamp(required=True, dump_default=None)
    next_attempt_at = Timestamp(allow_none=True, dump_default=None)
    delivered_at = Timestamp(allow_none=True, dump_default=None)
    last_status_code = fields.Integer(allow_none=True, dump_default=None)
    last_error = fields.String(allow_none=True, dump_default=None)
    attempt_log = fields.List(fields.Nested(DeliveryAttemptView), required=True, dump_default=list)

    def _event(self, doc: Mapping[str, Any]) -> Any:
        return doc.get("event") or doc.get("kind")

    @post_dump
    def _next_attempt_only_while_pending(self, data: dict[str, Any], **kwargs: Any) -> Any:
        if data.get("status") != DeliveryStatus.PENDING:
            data["next_attempt_at"] = None
        return data


def delivery_query(params: Mapping[str, Any]) -> dict[str, Any]:
    """The MongoDB filter of validated query parameters (fixed field names only)."""
    return {k: params[k] for k in ("event", "status", "endpoint_id", "event_id") if k in params}
