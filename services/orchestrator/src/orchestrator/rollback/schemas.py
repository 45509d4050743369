"""Schemas of ``/rollback/*``; strict input."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

_ID = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$", error="Invalid id.")


class CheckpointIn(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^[A-Za-z0-9][A-Za-z0-9_. -]{0,127}$",
            error=(
                "must start with a letter or digit; letters, digits, '_', '.', '-', ' ' (max 128)"
            ),
        ),
    )
    description = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=1000)
    )


class RollbackIn(Schema):
    class Meta:
        unknown = RAISE

    checkpoint_id = fields.String(validate=_ID)
    operation_ids = fields.List(
        fields.String(validate=_ID), validate=validate.Length(min=1, max=1000)
    )

    @validates_schema
    def _exactly_one(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("checkpoint_id" in data) == ("operation_ids" in data):
            raise ValidationError(
                "Give exactly one of checkpoint_id or operation_ids.", field_name="_schema"
            )


class CheckpointOut(Schema):
    id = fields.String()
    name = fields.String()
    description = fields.String(allow_none=True)
    created_at = fields.DateTime()
    size = fields.String()
    size_bytes = fields.Integer()


class CheckpointDetailOut(CheckpointOut):
    operations_count = fields.Integer()
    batches_count = fields.Integer()
    last_restored_at = fields.DateTime(allow_none=True)


class LedgerEntryOut(Schema):
    id = fields.String()
    batch_id = fields.String(allow_none=True)
    operation_id = fields.String(allow_none=True)
    task_id = fields.String()
    name = fields.String(allow_none=True)
    applied = fields.Dict()
    compensation = fields.Dict()
    applied_at = fields.DateTime()
    compensated_by = fields.String(allow_none=True)
    compensated_at = fields.DateTime(allow_none=True)


class RollbackResultOut(Schema):
    rollback_id = fields.String()
    success = fields.Boolean()
    operations_executed = fields.Integer()
    operations_failed = fields.Integer()
    duration = fields.Float()


class RollbackStatisticsOut(Schema):
    total_checkpoints = fields.Integer()
    total_rollbacks = fields.Integer()
    success_rate = fields.Float()
    average_rollback_time = fields.Float()
