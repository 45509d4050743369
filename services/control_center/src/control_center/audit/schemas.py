"""Schemas of the audit endpoints."""

from __future__ import annotations

import datetime as dt

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from provisioning_common.pagination import PageQuery

TEXT = validate.Length(1, 256)


class AuditQuery(PageQuery):
    user_id = fields.String(validate=TEXT)
    action = fields.String(validate=TEXT)
    resource = fields.String(validate=TEXT)
    from_ = fields.AwareDateTime(data_key="from", format="iso", default_timezone=dt.UTC)
    to = fields.AwareDateTime(format="iso", default_timezone=dt.UTC)

    @validates_schema
    def _ordered(self, data: dict[str, object], **kwargs: object) -> None:
        start, end = data.get("from_"), data.get("to")
        if isinstance(start, dt.datetime) and isinstance(end, dt.datetime) and start > end:
            raise ValidationError("'from' must not be after 'to'")


class AuditEventIn(Schema):
    id = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^[A-Za-z0-9._:-]{1,128}$",
            error="1-128 characters: letters, digits, '.', '_', ':', '-'",
        ),
    )
    timestamp = fields.AwareDateTime(required=True, format="iso", default_timezone=dt.UTC)
    user_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=256))
    action = fields.String(required=True, validate=TEXT)
    resource = fields.String(required=True, validate=validate.Length(0, 512))
    result = fields.String(required=True, validate=validate.Length(1, 64))
    details = fields.Dict(keys=fields.String(), load_default=dict)


MAX_BATCH = 500


class AuditBatchIn(Schema):
    """``{"events": [...]}``: up to :data:`MAX_BATCH` events in one call."""

    events = fields.List(
        fields.Nested(AuditEventIn),
        required=True,
        validate=validate.Length(1, MAX_BATCH),
    )


class AuditOut(Schema):
    id = fields.String()
    timestamp = fields.String()
    user_id = fields.String(allow_none=True)
    action = fields.String()
    resource = fields.String()
    result = fields.String()
    details = fields.Dict()


class AuditIngestOut(Schema):
    id = fields.String()
    duplicate = fields.Boolean()


class AuditBatchOut(Schema):
    stored = fields.Integer()
    duplicates = fields.Integer()
    results = fields.List(fields.Nested(AuditIngestOut))
