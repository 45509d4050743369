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


class ChainRangeQuery(Schema):
    """``from_seq``/``to_seq``: the part of the chain to check or export (inclusive)."""

    from_seq = fields.Integer(load_default=1, validate=validate.Range(min=1))
    to_seq = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1))

    @validates_schema
    def _ordered(self, data: dict[str, object], **kwargs: object) -> None:
        start, end = data.get("from_seq"), data.get("to_seq")
        if isinstance(start, int) and isinstance(end, int) and start > end:
            raise ValidationError("'from_seq' must not be after 'to_seq'")


class ChainErrorOut(Schema):
    seq = fields.Integer(metadata={"description": "the first sequence number found broken"})
    kind = fields.String(
        validate=validate.OneOf(["modified", "missing", "reordered", "truncated"]),
        metadata={
            "description": (
                "modified: a record (or a signed checkpoint) does not match its hash; "
                "missing: a sequence number without its record; reordered: a record "
                "not linked to the one before it; truncated: a signed checkpoint or "
                "the head names records past the last one"
            )
        },
    )
    detail = fields.String()


class ChainVerifyOut(Schema):
    valid = fields.Boolean(metadata={"description": "no error in the range checked"})
    checked = fields.Integer(metadata={"description": "records verified before any error"})
    from_seq = fields.Integer()
    last_seq = fields.Integer(allow_none=True, metadata={"description": "last record verified"})
    last_hash = fields.String(allow_none=True)
    checkpoints = fields.Integer(metadata={"description": "signed checkpoints in range"})
    unverified_checkpoints = fields.Integer(
        metadata={"description": "checkpoints signed by a key no longer in the key set"}
    )
    signed_through = fields.Integer(
        allow_none=True,
        metadata={"description": "the newest record covered by a verifiable checkpoint"},
    )
    first_error = fields.Nested(ChainErrorOut, allow_none=True)
