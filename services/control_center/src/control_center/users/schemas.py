"""Request and response schemas of ``/users``."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from provisioning_common.pagination import PageQuery

from ..fields import StrictBoolean
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
    id = fields.String()
    username = fields.String()
    email = fields.String()
    roles = fields.List(fields.String())
    enabled = fields.Boolean()
    mfa_enabled = fields.Boolean()
    created_at = fields.String()
    updated_at = fields.String()
    last_login = fields.String(allow_none=True)


class UserCreatedOut(Schema):
    id = fields.String()
    username = fields.String()
    email = fields.String()
    roles = fields.List(fields.String())
    enabled = fields.Boolean()
