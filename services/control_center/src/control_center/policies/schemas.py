"""Request and response schemas of ``/policies``: the routes answer the response
schemas' dumps of the policy documents (and of the decision), and the OpenAPI
document is generated from them."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from provisioning_common.fields import StrictBoolean, Timestamp
from provisioning_common.pagination import PageQuery

NAME = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
    error="1-128 characters: letters, digits, '_', '.', ':', '-'",
)
VERSION = validate.Regexp(r"^[0-9A-Za-z.+-]{1,32}$", error="Invalid version")


class RuleSchema(Schema):
    effect = fields.String(required=True, validate=validate.OneOf(["Allow", "Deny"]))
    resource = fields.String(required=True, validate=validate.Length(1, 256))
    action = fields.List(
        fields.String(validate=validate.Length(1, 128)),
        required=True,
        validate=validate.Length(1, 64),
    )
    condition = fields.String(
        load_default=None, dump_default=None, allow_none=True, validate=validate.Length(max=4096)
    )


class PolicyCreateIn(Schema):
    name = fields.String(required=True, validate=NAME)
    version = fields.String(load_default="1.0.0", validate=VERSION)
    description = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=1024)
    )
    rules = fields.List(fields.Nested(RuleSchema), required=True, validate=validate.Length(1, 256))
    enabled = StrictBoolean(load_default=True)


class PolicyUpdateIn(Schema):
    name = fields.String(validate=NAME)
    version = fields.String(validate=VERSION)
    description = fields.String(allow_none=True, validate=validate.Length(max=1024))
    rules = fields.List(fields.Nested(RuleSchema), validate=validate.Length(1, 256))
    enabled = StrictBoolean()

    @validates_schema
    def _not_empty(self, data: dict[str, object], **kwargs: object) -> None:
        if not data:
            raise ValidationError("Nothing to update")


class PolicyQuery(PageQuery):
    enabled = fields.Boolean()


class EvalUserIn(Schema):
    id = fields.String(load_default="", validate=validate.Length(max=128))
    username = fields.String(load_default="", validate=validate.Length(max=128))
    roles = fields.List(
        fields.String(validate=validate.Length(1, 64)),
        required=True,
        validate=validate.Length(max=16),
    )


class EvaluateIn(Schema):
    user = fields.Nested(EvalUserIn, load_default=None, allow_none=True)
    action = fields.String(required=True, validate=validate.Length(1, 128))
    resource = fields.String(required=True, validate=validate.Length(1, 256))
    context = fields.Dict(keys=fields.String(), load_default=dict)


class PolicyOut(Schema):
    """A policy document (``_id`` is the ``id``)."""

    id = fields.String(attribute="_id")
    name = fields.String()
    version = fields.String(dump_default="1.0.0")
    description = fields.String(allow_none=True, dump_default=None)
    rules = fields.List(fields.Nested(RuleSchema), dump_default=list)
    enabled = fields.Boolean(dump_default=True)
    created_at = Timestamp(dump_default=None)
    updated_at = Timestamp(dump_default=None)


class PolicyCreatedOut(Schema):
    """The answer of ``POST /policies``: a dump of the new policy's document."""

    id = fields.String(attribute="_id")
    name = fields.String()
    version = fields.String()


class DecisionOut(Schema):
    allowed = fields.Boolean()
    decision = fields.String()
    reason = fields.String()
    matched_rules = fields.List(fields.Dict())
    errors = fields.List(fields.String())
    user = fields.Dict()
