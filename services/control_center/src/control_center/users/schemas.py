"""Request and response schemas of ``/users``: the routes answer the response
schemas' dumps of the user documents, and the OpenAPI document is generated from them."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from provisioning_common.fields import StrictBoolean, Timestamp
from provisioning_common.pagination import PageQuery

from .model import ROLES, USERNAME_PATTERN


def _roles_field(**kwargs: Any) -> fields.List[Any]:
    return fields.List(
        fields.String(validate=validate.OneOf(ROLES, error="Unknown role; one of: {choices}")),
        validate=validate.Length(1, len(ROLES)),
        **kwargs,
    )


class UserCreateIn(Schema):
    username = fields.String(
        required=True,
        validate=validate.Regexp(
            USERNAME_PATTERN, error="3-64 characters: letters, digits, '.', '_', '-'"
        ),
    )
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, validate=validate.Length(1, 1024))
    roles = _roles_field(load_default=lambda: ["viewer"])
    enabled = StrictBoolean(load_default=True)


class UserUpdateIn(Schema):
    email = fields.Email(validate=validate.Length(max=254))
    password = fields.String(validate=validate.Length(1, 1024))
    current_password = fields.String(validate=validate.Length(1, 1024))
    roles = _roles_field()
    enabled = StrictBoolean()

    @validates_schema
    def _not_empty(self, data: dict[str, object], **kwargs: object) -> None:
        if not data:
            raise ValidationError("Nothing to update")


class UserQuery(PageQuery):
    role = fields.String(validate=validate.OneOf(ROLES))
    enabled = fields.Boolean()


class UserOut(Schema):
    """A user document's public part (``_id`` is the ``id``; never a hash or a secret)."""

    id = fields.String(attribute="_id")
    username = fields.String()
    email = fields.String(dump_default=None)
    roles = fields.List(fields.String(), dump_default=list)
    enabled = fields.Boolean(dump_default=True)
    mfa_enabled = fields.Boolean(dump_default=False)
    created_at = Timestamp(dump_default=None)
    updated_at = Timestamp(dump_default=None)
    last_login = Timestamp(allow_none=True, dump_default=None)


class UserCreatedOut(Schema):
    """The answer of ``POST /users``: a dump of the new user's document."""

    id = fields.String(attribute="_id")
    username = fields.String()
    email = fields.String(dump_default=None)
    roles = fields.List(fields.String(), dump_default=list)
    enabled = fields.Boolean(dump_default=True)
