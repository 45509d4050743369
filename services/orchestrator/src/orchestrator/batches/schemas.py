"""Marshmallow schemas of the batch endpoints: strict input (unknown fields are
refused) and the response schemas whose dumps the routes answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from provisioning_common.fields import Timestamp

from .model import OPERATION_TYPES, PENDING, SAFE_ID, SAFE_VALUE, SEMVER

MAX_OPERATIONS = 500
MAX_ITEMS_PER_OPERATION = 200

_safe_id = validate.Regexp(
    SAFE_ID,
    error="must start with a letter or digit; letters, digits, '_', '.', '-' (max 64)",
)
_safe_value = validate.Regexp(
    SAFE_VALUE,
    error="must start with a letter or digit; letters, digits, '_', '.', ':', '-' (max 128)",
)


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class ServerConfigSchema(StrictSchema):
    name = fields.String(required=True, validate=_safe_value)
    plan = fields.String(required=True, validate=_safe_value)
    zone = fields.String(required=True, validate=_safe_value)


_PER_TYPE = {
    "server_batch": "server_configs",
    "taskserv_batch": "taskservs",
    "cluster_batch": "cluster_type",
    "approval": "approvers",
}


class OperationSchema(StrictSchema):
    id = fields.String(required=True, validate=_safe_id)
    type = fields.String(required=True, validate=validate.OneOf(OPERATION_TYPES))
    # Required for every type but ``approval`` (checked below).
    provider = fields.String(validate=_safe_value)
    dependencies = fields.List(
        fields.String(validate=_safe_id),
        load_default=list,
        validate=validate.Length(max=MAX_OPERATIONS),
    )
    server_configs = fields.List(
        fields.Nested(ServerConfigSchema),
        validate=validate.Length(min=1, max=MAX_ITEMS_PER_OPERATION),
    )
    taskservs = fields.List(
        fields.String(validate=_safe_value),
        validate=validate.Length(min=1, max=MAX_ITEMS_PER_OPERATION),
    )
    cluster_type = fields.String(validate=_safe_value)
    approvers = fields.List(
        fields.String(validate=_safe_value),
        validate=validate.Length(min=1, max=50),
        metadata={"description": "approval: roles and/or user ids that may decide"},
    )
    timeout_seconds = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=30 * 86400),
        metadata={"description": "approval: the gate fails when undecided this long"},
    )
    message = fields.String(
        validate=validate.Length(max=1000), metadata={"description": "approval: for approvers"}
    )

    @validates_schema
    def _per_type_fields(self, data: dict[str, Any], **kwargs: Any) -> None:
        kind = data.get("type")
        if kind not in _PER_TYPE:
            return
        errors: dict[str, list[str]] = {}
        needed = _PER_TYPE[kind]
        if data.get(needed) is None:
            errors[needed] = [f"Required for type '{kind}'."]
        if kind != "approval" and data.get("provider") is None:
            errors["provider"] = [f"Required for type '{kind}'."]
        if kind != "approval":
            for extra in ("timeout_seconds", "message"):
                if extra in data:
                    errors[extra] = [f"Not allowed for type '{kind}'."]
        for other in _PER_TYPE.values():
            if other != needed and other in data:
                errors[other] = [f"Not allowed for type '{kind}'."]
        deps = data.get("dependencies") or []
        if len(set(deps)) != len(deps):
            errors["dependencies"] = ["Dependencies must be unique."]
        if data.get("id") in deps:
            errors["dependencies"] = ["An operation cannot depend on itself."]
        if kind == "server_batch" and data.get("server_configs"):
            names = [c["name"] for c in data["server_configs"]]
            if len(set(names)) != len(names):
                errors["server_configs"] = ["Server names must be unique within an operation."]
        taskservs = data.get("taskservs") or []
        if kind == "taskserv_batch" and len(set(taskservs)) != len(taskservs):
            errors["taskservs"] = ["Taskservs must be unique within an operation."]
        if errors:
            raise ValidationError(errors)


class BatchSubmissionSchema(StrictSchema):
    """POST /batch/execute and /batch/plan body. ``parallel_limit``'s upper bound
    comes from configuration (context ``max_parallel_limit``)."""

    name = fields.String(required=True, validate=_safe_id)
    version = fields.String(
        required=True,
        validate=validate.Regexp(SEMVER, error="must be a semantic version (e.g. 1.0.0)"),
    )
    storage_backend = fields.String(
        load_default="mongodb", validate=validate.Regexp(r"^[A-Za-z0-9_.-]{1,32}$")
    )
    parallel_limit = fields.Integer(load_default=5, strict=True)
    rollback_enabled = fields.Boolean(load_default=False)
    operations = fields.List(
        fields.Nested(OperationSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_OPERATIONS),
    )

    def __init__(self, *, max_parallel_limit: int = 100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_parallel_limit = max_parallel_limit

    @validates_schema
    def _batch_rules(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors: dict[str, list[str]] = {}
        limit = data.get("parallel_limit")
        if isinstance(limit, int) and not 1 <= limit <= self.max_parallel_limit:
            errors["parallel_limit"] = [f"Must be between 1 and {self.max_parallel_limit}."]
        ids = [op["id"] for op in data.get("operations") or []]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            errors["operations"] = [f"Duplicate operation ids: {', '.join(dupes)}."]
        if errors:
            raise ValidationError(errors)


class ResumeSchema(StrictSchema):
    """POST /batch/operations/{id}/resume body (optional): which operations to run
    again (default: every one that did not complete) and whether named operations
    that completed run again."""

    operations = fields.List(
        fields.String(validate=_safe_id),
        validate=validate.Length(min=1, max=MAX_OPERATIONS),
        metadata={
            "description": "Operation ids to run again (their dependencies must "
            "have completed or be listed too)"
        },
    )
    rerun_completed = fields.Boolean(
        load_default=False,
        metadata={"description": "Run the named operations' completed items again"},
    )

    @validates_schema
    def _unique(self, data: dict[str, Any], **kwargs: Any) -> None:
        ops = data.get("operations") or []
        if len(set(ops)) != len(ops):
            raise ValidationError({"operations": ["Operation ids must be unique."]})
        if data.get("rerun_completed") and not ops:
            raise ValidationError(
                {"rerun_completed": ["Needs the operations to run again in 'operations'."]}
            )


class ApprovalDecisionSchema(StrictSchema):
    """POST /batch/operations/{id}/approvals/{operation_id} body."""

    decision = fields.String(required=True, validate=validate.OneOf(("approve", "reject")))
    comment = fields.String(validate=validate.Length(max=1000), load_default=None)


class BatchOperationOut(Schema):
    """An operation of a stored batch, as ``/batch/execute`` answers it."""

    id = fields.String()
    status = fields.String(dump_default=PENDING)
    progress = fields.Float(dump_default=0.0)


class BatchSubmittedOut(Schema):
    """The answer of ``/batch/execute``: a dump of the stored batch document."""

    batch_id = fields.String(attribute="_id")
    status = fields.String()
    operations = fields.List(fields.Nested(BatchOperationOut))


class OperationDetailOut(BatchOperationOut):
    type = fields.String()
    dependencies = fields.List(fields.String(), dump_default=list)
    results = fields.Method("_results", metadata={"type": "object"})

    def _results(self, op: Mapping[str, Any]) -> dict[str, Any]:
        """The operation's task ids with what reconciliation recorded."""
        return {"task_ids": op.get("task_ids", []), **(op.get("results") or {})}


class BatchOut(Schema):
    """A stored batch document, as ``/batch/operations[/{id}]`` show it."""

    batch_id = fields.String(attribute="_id")
    name = fields.String()
    version = fields.String(dump_default=None)
    status = fields.String()
    storage_backend = fields.String(dump_default=None)
    parallel_limit = fields.Integer(dump_default=None)
    rollback_enabled = fields.Boolean(dump_default=False)
    rolled_back = fields.Boolean(dump_default=False)
    rollback = fields.Dict(allow_none=True, dump_default=None)
    created_at = Timestamp()
    started_at = Timestamp(allow_none=True, dump_default=None)
    completed_at = Timestamp(allow_none=True, dump_default=None)
    operations = fields.List(fields.Nested(OperationDetailOut))
    resumed_from = fields.String(
        allow_none=True, dump_default=None, metadata={"description": "The batch this run resumes"}
    )
    resumed_by = fields.String(
        allow_none=True,
        dump_default=None,
        metadata={"description": "The batch that resumed this one"},
    )


class PlanTaskOut(Schema):
    id = fields.String()
    name = fields.String()
    command = fields.String()
    args = fields.List(fields.String())
    dependencies = fields.List(fields.String())
    compensation = fields.Dict()


class PlanOperationOut(Schema):
    id = fields.String()
    type = fields.String()
    dependencies = fields.List(fields.String())
    tasks = fields.List(fields.Nested(PlanTaskOut))


class PlanOut(Schema):
    name = fields.String()
    version = fields.String()
    parallel_limit = fields.Integer()
    rollback_enabled = fields.Boolean()
    storage_backend = fields.String()
    total_tasks = fields.Integer()
    waves = fields.List(fields.List(fields.String()))
    operations = fields.List(fields.Nested(PlanOperationOut))
