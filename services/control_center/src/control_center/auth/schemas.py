"""Request and response schemas of the auth endpoints."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from ..users.model import BCRYPT_MAX_BYTES, ROLES


def _bcrypt_length(value: str) -> None:
    if len(value.encode("utf-8")) > BCRYPT_MAX_BYTES:
        raise ValidationError(f"Passwords longer than {BCRYPT_MAX_BYTES} bytes are not supported")


TOTP_CODE = validate.Regexp(r"^[0-9]{6}$", error="MFA code must be 6 digits")


class LoginIn(Schema):
    username = fields.String(required=True, validate=validate.Length(1, 128))
    password = fields.String(required=True, validate=[validate.Length(1, 1024), _bcrypt_length])
    mfa_code = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(r"^([0-9]{6})?$", error="MFA code must be 6 digits"),
    )


class LoginUserOut(Schema):
    id = fields.String()
    username = fields.String()
    email = fields.String()
    roles = fields.List(fields.String(validate=validate.OneOf(ROLES)))


class LoginOut(Schema):
    token = fields.String()
    expires_at = fields.String()
    user = fields.Nested(LoginUserOut)
    refresh_token = fields.String()
    refresh_expires_at = fields.String()


class RefreshIn(Schema):
    token = fields.String(required=True, validate=validate.Length(1, 8192))


class RefreshOut(Schema):
    token = fields.String()
    expires_at = fields.String()
    refresh_token = fields.String()
    refresh_expires_at = fields.String()


class TokenIn(Schema):
    grant_type = fields.String(required=True, validate=validate.OneOf(["client_credentials"]))
    client_id = fields.String(required=True, validate=validate.Length(1, 128))
    client_secret = fields.String(required=True, validate=validate.Length(1, 1024))


class TokenOut(Schema):
    access_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()
    expires_at = fields.String()


class IntrospectIn(Schema):
    token = fields.String(required=True, validate=validate.Length(1, 8192))
    token_type_hint = fields.String(load_default=None, allow_none=True)


class IntrospectOut(Schema):
    active = fields.Boolean()
    sub = fields.String()
    username = fields.String()
    roles = fields.List(fields.String())
    exp = fields.Integer()
    typ = fields.String()
    jti = fields.String()


class MfaEnrollIn(Schema):
    password = fields.String(required=True, validate=[validate.Length(1, 1024), _bcrypt_length])


class MfaEnrollOut(Schema):
    secret = fields.String()
    otpauth_uri = fields.String()


class MfaVerifyIn(Schema):
    code = fields.String(required=True, validate=TOTP_CODE)
