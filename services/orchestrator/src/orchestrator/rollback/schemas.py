"""Schemas of ``/rollback/*``: strict input, and the response schemas whose dumps
the routes answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from orchestrator.state.model import format_size
from provisioning_common.fields import Timestamp

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
    """A checkpoint document as listed (``_id`` is the ``id``; the recorded state is
    never shown)."""

    id = fields.String(attribute="_id")
    name = fields.String()
    description = fields.String(allow_none=True, dump_default=None)
    created_at = Timestamp()
    size = fields.Method("_size", metadata={"type": "string"})
    size_bytes = fields.Integer(dump_default=0)

    def _size(self, doc: Mapping[str, Any]) -> str:
        """The recorded state's size as the contract shows it (``"150MB"``)."""
        return format_size(int(doc.get("size_bytes") or 0))


class CheckpointDetailOut(CheckpointOut):
    operations_count = fields.Integer(dump_default=0)
    batches_count = fields.Integer(dump_default=0)
    last_restored_at = Timestamp(allow_none=True, dump_default=None)


class LedgerEntryOut(Schema):
    """A ledger document (``_id`` is the ``id``)."""

    id = fields.String(attribute="_id")
    batch_id = fields.String(allow_none=True, dump_default=None)
    operation_id = fields.String(allow_none=True, dump_default=None)
    task_id = fields.String(dump_default=None)
    name = fields.String(allow_none=True, dump_default=None)
    applied = fields.Dict(dump_default=None)
    compensation = fields.Method("_compensation", metadata={"type": "object"})
    applied_at = Timestamp(dump_default=None)
    compensated_by = fields.String(allow_none=True, dump_default=None)
    compensated_at = Timestamp(allow_none=True, dump_default=None)

    def _compensation(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """The command a rollback runs and its arguments (not the stored internals)."""
        comp = doc.get("compensation") or {}
        return {k: v for k, v in comp.items() if k in ("command", "args")}


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
